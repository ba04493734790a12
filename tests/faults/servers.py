"""Private Redis and PostgreSQL servers that the fault tests may stop and restart.

Never the machine's shared ones (6379, 5432): other test runs and stacks use those. Each
server here lives in a temporary directory on a free port and is gone after the tests.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.processes import free_port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for_port(port: int, *, up: bool, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not {'start' if up else 'stop'} within {timeout} s")


class PrivateRedis:
    """A redis-server of our own on a free port, with nothing saved to disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="fathomloom-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, up=True, timeout=10, what="redis-server")

    def stop(self) -> None:
        """SIGKILL: a crash, not a polite shutdown; everything in it is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        _wait_for_port(self.port, up=False, timeout=10, what="redis-server")

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries' folder, or None if none is installed."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parent.parent.name.split(".")[0]),
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temporary folder), trust auth on 127.0.0.1.

    Raises FileNotFoundError if the binaries (or, as root, the `postgres` user) are missing.
    """

    def __init__(self, **server_settings: str) -> None:
        """`server_settings`: more `-c name=value` for the server (a test's own)."""
        self.server_settings = server_settings
        binaries = postgres_bin()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl) found")
        self.bin = binaries
        self.run_as: list[str] = []
        self.folder = Path(tempfile.mkdtemp(prefix="fathomloom-pg-"))
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.folder, ignore_errors=True)
                raise FileNotFoundError("running as root and there is no postgres user") from None
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.folder / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.folder,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync and full-page writes guard against the machine crashing, not PostgreSQL: off
        # for speed. A crash (an immediate stop) loses what the WAL writer had not written
        # yet: the queue's last changes, which commit asynchronously (QUEUE_SYNCHRONOUS_COMMIT;
        # tests/faults/test_asynchronous_commit.py), never a synchronous commit.
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        for name, value in self.server_settings.items():
            options += f" -c {name}={value}"
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        _wait_for_port(self.port, up=True, timeout=20, what="PostgreSQL")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: every connection dies at once, as in a crash or a failover."""
        if port_open(self.port):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        _wait_for_port(self.port, up=False, timeout=20, what="PostgreSQL")

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
