"""SPEC.md and the code stay in step: CDDL against the vectors, the error table, the wire cost."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType
from typing import Any

import pycddl
import pytest

from protocol import ErrorCode
from protocol.limits import MAX_BODY_BYTES, MAX_DEPTH, MAX_OPS_PER_PUSH

from .conftest import ROOT, SPEC


def spec_text() -> str:
    return SPEC.read_text()


def spec_cddl() -> str:
    return "\n".join(re.findall(r"```cddl\n(.*?)```", spec_text(), flags=re.S))


def load_wire_cost() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wire_cost", ROOT / "bench" / "wire_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_valid_vector_matches_the_spec_cddl(valid_vectors: list[dict[str, Any]]) -> None:
    cddl = spec_cddl()
    for vector in valid_vectors:
        schema = pycddl.Schema(f"vector-root = {vector['rule']}\n{cddl}")
        schema.validate_cbor(bytes.fromhex(vector["hex"]))


def test_the_cddl_refuses_what_the_spec_forbids() -> None:
    cddl = spec_cddl()
    schema = pycddl.Schema(f"vector-root = sync-request\n{cddl}")
    with pytest.raises(pycddl.ValidationError):
        schema.validate_cbor(bytes.fromhex("a1026131"))  # cursor as text
    with pytest.raises(pycddl.ValidationError):
        schema.validate_cbor(bytes.fromhex("a104190e10"))  # wait of an hour


def test_error_table_lists_every_code_with_its_status() -> None:
    rows = re.findall(r"^\| +(\d+) \| `(\w+)` \| (\d{3}) \|", spec_text(), flags=re.M)
    table = {int(code): (name, int(status)) for code, name, status in rows}
    assert table == {int(c): (c.name.lower(), c.http_status) for c in ErrorCode}


def test_limits_table_states_the_code_limits() -> None:
    text = spec_text()
    assert f"| request body | {MAX_BODY_BYTES // 1024} KiB" in text
    assert f"| nesting of arrays and maps | {MAX_DEPTH} |" in text
    assert f"| ops per push | {MAX_OPS_PER_PUSH} |" in text


def test_wire_cost_section_is_current() -> None:
    wire_cost = load_wire_cost()
    assert wire_cost.main(["--check"]) == 0


def test_wire_cost_targets() -> None:
    wire_cost = load_wire_cost()
    assert wire_cost.empty_exchange() <= 64
    for scenario, overhead in wire_cost.overhead_per_op().items():
        assert overhead <= 16, scenario


def test_figures_quoted_in_the_prose_match_the_code() -> None:
    wire_cost = load_wire_cost()
    prose = " ".join(spec_text().split())
    assert f"An empty sync exchange costs {wire_cost.empty_exchange()} bytes of body" in prose
    note = wire_cost.rows()[0].note  # "... authenticated framing 24 + 20 B"
    request, response = re.search(r"framing (\d+) \+ (\d+) B", note).groups()  # type: ignore[union-attr]
    assert f"{request} and {response} bytes around the bodies of an empty sync" in prose
