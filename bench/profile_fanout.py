"""Profile daphne (ours or the seed design) with py-spy while sockets connect and while
events fan out; prints the functions with the most samples, inclusive and self.

    python -m bench.profile_fanout [--kind ours|seed] [--sockets 1000] [--events 40]

Collapsed stacks are kept in var/bench-logs/profile-*.txt (flamegraph.pl reads them).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import LOG_DIR, raise_open_files


def top(path: str, count: int = 25) -> None:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(path) as stacks:
        for line in stacks:
            stack, _, samples = line.rstrip().rpartition(" ")
            n = int(samples)
            total += n
            frames = stack.split(";")
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
    print(f"--- {path}: {total} samples; inclusive")
    for frame, n in inclusive.most_common(count):
        print(f"{100 * n / total:5.1f}%  {frame[:150]}")
    print("--- self")
    for frame, n in own.most_common(count):
        print(f"{100 * n / total:5.1f}%  {frame[:150]}")


def record(pid: int, name: str, seconds: float) -> subprocess.Popen:
    path = LOG_DIR / f"profile-{name}.txt"
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "500",
            "--duration",
            str(int(seconds)),
            "--output",
            str(path),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", default="ours")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--events", type=int, default=40)
    args = parser.parse_args()
    from bench.run import bench_env

    env = bench_env()
    raise_open_files()
    import django

    django.setup()
    import redis

    from bench import fanout
    from bench.setup_data import add_entries, reset_queue, users_and_tokens

    regular, _ = users_and_tokens()
    owners = [u for u, _ in regular]
    reset_queue()
    add_entries(owners[:50], 50)
    add_entries(owners[50:70], 20, status="running")
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    server = fanout.start_server(args.kind, env)
    clients = fanout.Clients(env)
    publisher = fanout.Publisher(env["REDIS_URL"])
    ids = publisher.queued_ids()
    try:
        spy = record(server.pids[0], f"{args.kind}-connect", 60)
        t = time.monotonic()
        print(clients.connect(fanout.socket_targets(server, 0, args.sockets, regular)))
        print(f"connect: {args.sockets / (time.monotonic() - t):.0f} a second")
        spy.send_signal(signal.SIGINT)
        spy.wait()
        time.sleep(1)
        spy = record(server.pids[0], f"{args.kind}-events", 120)
        times = []
        for _ in range(args.events):
            seq, t0 = publisher.event(args.kind, ids, "")
            got = clients.wait(seq, 30)
            times.append((got["last"] - t0) * 1000)
        spy.send_signal(signal.SIGINT)
        spy.wait()
        print("fan-out ms", sorted(times))
    finally:
        clients.close()
        server.stop()
    time.sleep(0.5)
    top(str(LOG_DIR / f"profile-{args.kind}-connect.txt"))
    top(str(LOG_DIR / f"profile-{args.kind}-events.txt"))


if __name__ == "__main__":
    sys.exit(main())
