"""A small synchronous WebSocket client for tests: every frame it reads is kept."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.processes import ws_url


class Socket:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[str] = []

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        text = self.connection.recv(timeout=timeout)
        self.frames.append(text)
        return json.loads(text)

    def recv_update(self, timeout: float = 10) -> dict[str, Any]:
        """The next QueueUpdate, skipping ProgressUpdate frames."""
        while True:
            message = self.recv(timeout)
            if message["type"] != "ProgressUpdate":
                return message

    def send(self, message: dict[str, Any] | str) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def nothing_pending(self, wait: float = 0.5) -> bool:
        """True if no frame arrives within `wait` (ping/pong proves the socket works)."""
        time.sleep(wait)
        self.send({"type": "ping"})
        return self.recv() == {"type": "pong"}

    def close_code(self, timeout: float = 5) -> int | None:
        """Wait for the server to close the socket; its close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.recv(timeout=max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_socket(
    base_url: str,
    *,
    session: Any = None,
    query: str = "",
    origin: str | None = None,
) -> Socket:
    headers = {}
    if session is not None:
        headers["Cookie"] = f"sessionid={session.cookies['sessionid']}"
    connection = connect(
        ws_url(base_url) + query,
        additional_headers=headers,
        origin=origin or base_url,
        open_timeout=10,
        proxy=None,  # loopback only, whatever *_proxy variables say
        max_queue=None,  # read everything as it comes: a test reads later, never slowly
        legacy=True,  # a plain connection; Socket closes it
    )
    return Socket(connection)
