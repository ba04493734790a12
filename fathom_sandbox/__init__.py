"""A local stand-in for Fathom's public API, with its rate limits and injectable faults.

Start it with ``python -m fathom_sandbox --port N``; tests use ``fathom_sandbox.testing``.
"""

from .server import API_PREFIX, Config, SandboxServer, SandboxState, make_server

SANDBOX_KEYS = ("sandbox-key-alice", "sandbox-key-bob")

__all__ = ["API_PREFIX", "SANDBOX_KEYS", "Config", "SandboxServer", "SandboxState", "make_server"]
