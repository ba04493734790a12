"""What every benchmark shares: processes, statistics, the machine and the versions."""

from __future__ import annotations

import math
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("VAR_DIR", ROOT / "var"))
LOG_DIR = VAR / "bench-logs"


def raise_open_files(wanted: int = 65536) -> int:
    """Raise this process's soft open-files limit as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 20 values is the largest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else float("nan"),
    }


class Process:
    """A child process whose output goes to var/bench-logs/NAME.log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.output: list[str] = []
        self.popen = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if len(self.output) < 2000:
                self.output.append(line)
            self._log.write(line)
            self._log.flush()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def wait_for_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def start_daphne(
    env: dict[str, str], name: str, app: str = "fathomloom.asgi:application"
) -> tuple[Process, int]:
    port = free_port()
    process = Process(
        name,
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
        env,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
    except RuntimeError:
        process.stop()
        raise
    return process, port


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "load": os.getloadavg(),
    }


def versions(redis_url: str) -> dict[str, str]:
    from importlib.metadata import version

    import redis
    from django.db import connection

    result = {"Python": platform.python_version()}
    for package in ("Django", "channels", "channels-redis", "daphne", "redis", "websockets"):
        result[package] = version(package)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        result["PostgreSQL"] = cursor.fetchone()[0]
    result["Redis"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    return result
