"""Shared fixtures: the vector files and the script that generates them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import protocol
from protocol import forms
from protocol.e2e import EnvelopeKey, MessageBody, SealedPayload

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocol" / "vectors"
SPEC = ROOT / "protocol" / "SPEC.md"

FRAME_TYPES: dict[str, Any] = {
    name: getattr(protocol, name)
    for name in (
        "RegisterRequest", "RegisterResponse", "ChallengeRequest", "ChallengeResponse",
        "SessionRequest", "SessionResponse", "AuthedRequest", "AuthedResponse", "ErrorFrame",
        "SyncRequest", "SyncResponse", "DirectoryRequest", "DirectoryResponse",
    )
}
FRAME_TYPES.update(SealedPayload=SealedPayload, EnvelopeKey=EnvelopeKey, MessageBody=MessageBody)

RULE_TYPES: dict[str, Any] = {
    "register-request": protocol.RegisterRequest,
    "register-response": protocol.RegisterResponse,
    "challenge-request": protocol.ChallengeRequest,
    "challenge-response": protocol.ChallengeResponse,
    "session-request": protocol.SessionRequest,
    "session-response": protocol.SessionResponse,
    "authed-request": protocol.AuthedRequest,
    "authed-response": protocol.AuthedResponse,
    "error": protocol.ErrorFrame,
    "sync-request": protocol.SyncRequest,
    "sync-response": protocol.SyncResponse,
    "directory-request": protocol.DirectoryRequest,
    "directory-response": protocol.DirectoryResponse,
    "chain-request": protocol.ChainRequest,
    "form-create": forms.FormCreate,
    "form-response": forms.FormResponse,
    "form-close": forms.FormClose,
    "job-update": forms.JobUpdate,
    "chain-response": protocol.ChainResponse,
    "sealed-payload": SealedPayload,
    "envelope-key": EnvelopeKey,
    "message": MessageBody,
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="session")
def valid_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / "valid.json").read_text())["vectors"]
    return vectors


@pytest.fixture(scope="session")
def invalid_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / "invalid.json").read_text())["vectors"]
    return vectors


def vector_input(vector: dict[str, Any]) -> bytes:
    """The input bytes of a negative vector (literal hex, or prefix + repeat * count)."""
    if "hex" in vector:
        return bytes.fromhex(vector["hex"])
    count: int = vector["count"]
    return bytes.fromhex(vector["prefix"]) + bytes.fromhex(vector["repeat"]) * count
