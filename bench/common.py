"""What every benchmark shares: processes, statistics, the machine and the versions."""

from __future__ import annotations

import math
import os
import platform
import resource
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from devtools import processes
from devtools.processes import DAPHNE_APP, LoggedProcess

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


class Process(LoggedProcess):
    """A child process whose output goes to var/bench-logs/NAME.log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        super().__init__(name, args, env, log_dir=LOG_DIR, cwd=ROOT, keep_lines=2000)


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
    env: dict[str, str], name: str, app: str = DAPHNE_APP
) -> tuple[LoggedProcess, int]:
    return processes.start_daphne(env, name, log_dir=LOG_DIR, cwd=ROOT, app=app, keep_lines=2000)


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
