"""Test helpers: run the sandbox as a real process and drive its control API."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .server import API_PREFIX

_READY = re.compile(r"fathom sandbox listening on (http://\S+)")


class SandboxControl:
    """A client for ``/_sandbox/``: faults, the request log, config, seeded recordings."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self._http = httpx.Client(base_url=self.root_url + "/_sandbox", timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        response.raise_for_status()
        return response.json()

    def add_fault(
        self,
        fault: str,
        *,
        match: str | None = None,
        method: str | None = None,
        times: int | None = 1,
        **params: Any,
    ) -> dict[str, Any]:
        """E.g. ``add_fault("status", match="/meetings", status=503, times=2)``.

        ``match`` is a path below ``/external/v1`` (or ``/signed/*``), exact or a glob;
        ``times=None`` keeps the fault for every matching request.
        """
        spec = {"fault": fault, "match": match, "method": method, "times": times, **params}
        return self._call("POST", "/faults", spec)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far: time, method, path, query, has_api_key, status, fault."""
        return self._call("GET", "/requests")

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Changes limits and delays (``rate_limit``, ``page_size``, ``processing_polls``...)."""
        return self._call("POST", "/config", settings)

    def reset(self) -> None:
        """Back to the seeded meetings and default config, with no faults and no log."""
        self._call("POST", "/reset")

    def add_meeting(self, api_key: str, recording_id: int, **fields: Any) -> dict[str, Any]:
        """Adds a meeting for ``api_key`` (creating the key); ``media="recording-2.mp4"``."""
        return self._call(
            "POST", "/meetings", {"api_key": api_key, "recording_id": recording_id, **fields}
        )

    def add_key(self, api_key: str) -> None:
        """Makes ``api_key`` valid, with no meetings."""
        self._call("POST", "/meetings", {"api_key": api_key, "key_only": True})

    def webhooks(self) -> list[dict[str, Any]]:
        """The webhooks registered through ``POST /webhooks`` (no secrets)."""
        return self._call("GET", "/webhooks")

    def deliveries(self) -> list[dict[str, Any]]:
        """Every POST the sandbox made: webhooks and callbacks, each attempt and its status."""
        return self._call("GET", "/deliveries")

    def recording(self, recording_id: int) -> dict[str, Any]:
        """``{"size", "sha256", "media"}`` of the file served for the recording."""
        return self._call("GET", f"/recordings/{recording_id}/sha256")

    def recording_bytes(self, recording_id: int) -> bytes:
        response = self._http.get(f"/recordings/{recording_id}/media")
        response.raise_for_status()
        return response.content


class SandboxProcess:
    """``python -m fathom_sandbox`` on a free port; a context manager.

    >>> with SandboxProcess() as sandbox:
    ...     FathomClient("sandbox-key-alice", base_url=sandbox.base_url)
    """

    def __init__(self, *args: str, startup_timeout: float = 15.0) -> None:
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.root_url = ""
        self.control: SandboxControl | None = None

    @property
    def base_url(self) -> str:
        """What ``FATHOM_API_BASE_URL`` should be to talk to this sandbox."""
        return self.root_url + API_PREFIX

    def start(self) -> SandboxProcess:
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        # --port 0: the sandbox binds a free port itself and prints it, so no race for one.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fathom_sandbox", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + self.startup_timeout
        selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        selector.register(self.process.stdout, selectors.EVENT_READ)
        output = []
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = self.process.stdout.readline()
            if not line:
                break
            output.append(line)
            if m := _READY.search(line):
                self.root_url = m.group(1)
                break
        selector.close()
        if not self.root_url:
            self.stop()
            raise RuntimeError(f"the fathom sandbox did not start: {''.join(output)!r}")
        self.control = SandboxControl(self.root_url)
        return self

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
