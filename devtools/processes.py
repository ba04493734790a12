"""Child processes for the tests and the benchmarks: started with their output in a log
file, waited on, and stopped without leaving anything behind."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from realtime.serve import READY

DAPHNE_APP = "fathomloom.asgi:application"
# How daphne runs in production (Procfile, docs/deployment.md), so that tests and the
# benchmarks run it the same way:
# - through realtime.serve: its listening socket is opened with SO_REUSEPORT, so that a
#   new daphne can start on the same port before the old one stops (a restart with no
#   moment when nobody listens), and it says when it is ready (realtime.serve.READY).
# - `-v 0`: no access log. daphne writes three lines a WebSocket (connecting, connected,
#   disconnected) to stdout, a system call each, on the event loop every socket waits on;
#   the proxy in front keeps the access log (docs/deployment.md).
# - a listen backlog of 1,024 instead of Twisted's 50: a burst of clients (a reconnect
#   storm after a restart) overflowed 50, and each dropped SYN costs its client a 1 s
#   retransmission (bench/notes.md, issue 14). The kernel caps it at net.core.somaxconn.
DAPHNE_BACKLOG = 1024


def daphne_options(host: str, port: int | str) -> list[str]:
    """realtime.serve's command-line options for listening on host:port (its own, then
    daphne's), as production runs it."""
    return ["--host", host, "--port", str(port), "--backlog", str(DAPHNE_BACKLOG), "-v", "0"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30) -> None:
    """Wait until `url` answers below 500; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class LoggedProcess:
    """A child process whose output goes to LOG_DIR/NAME.log and can be waited on.

    `keep_lines` bounds the output kept in memory (a busy server logs a lot).
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        *,
        log_dir: Path,
        cwd: Path,
        keep_lines: int | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.output: list[str] = []
        self._keep_lines = keep_lines
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if self._keep_lines is None or len(self.output) < self._keep_lines:
                self.output.append(line)
            self._log.write(line)
            self._log.flush()

    def wait_for_output(self, pattern: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            if any(regex.search(line) for line in list(self.output)):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {pattern!r}; see {self.log_path}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def start_daphne(
    env: dict[str, str],
    name: str,
    *,
    log_dir: Path,
    cwd: Path,
    port: int | None = None,
    app: str = DAPHNE_APP,
    timeout: float = 30,
    keep_lines: int | None = None,
    options: tuple[str, ...] = (),
) -> tuple[LoggedProcess, int]:
    """daphne serving `app` on 127.0.0.1 (a free port unless given), once it says it is
    ready and /healthz answers; `options` go to daphne before the application
    (`--proxy-headers`, say). With the `port` of a running daphne (started here too),
    both serve it until one stops: the kernel spreads new connections between them."""
    port = port or free_port()
    process = LoggedProcess(
        name,
        [sys.executable, "-m", "realtime.serve", *daphne_options("127.0.0.1", port), *options, app],
        env,
        log_dir=log_dir,
        cwd=cwd,
        keep_lines=keep_lines,
    )
    try:
        # The ready line first: another daphne may hold the same port (a restart), and
        # it would answer /healthz too.
        process.wait_for_output(READY, timeout=timeout)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    except RuntimeError:
        process.stop()
        raise
    return process, port
