"""syncd: the offline-first sync server.

The server speaks ``protocol/SPEC.md``. It is being built in layers: the HTTP
edge decodes and encodes frames, the sync service applies the rules of the
protocol, and the storage layer holds ciphertext and routing fields only.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
