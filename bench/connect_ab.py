"""Scenario 7's set-up and one connect of N sockets against a fresh daphne (ours, then
bare websockets), from the tree it is run in: to compare two commits in one sitting, run
it alternately in this worktree and in another commit's tree (`git archive <commit> |
tar -x -C DIR`, then `cd DIR && PYTHONPATH=DIR <worktree>/.venv/bin/python -m
bench.connect_ab --label before`), before/after/after/before:

    DATABASE_URL=postgres://.../fathomloom_<name>_bench REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python -m bench.connect_ab --label after --sizes 1000

Prints each run's seconds until every socket holds its first message and the server's
CPU per socket, which is steadier than the seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="")
    parser.add_argument("--sizes", default="1000")
    args = parser.parse_args()
    from bench.run import bench_env

    env = bench_env()
    from bench.common import ROOT, raise_open_files

    raise_open_files()
    from bench.setup_data import ensure_database, migrate

    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    migrate()
    import redis

    from bench import connect
    from bench.setup_data import add_entries, connect_users, reset_queue

    sizes = [int(n) for n in args.sizes.split(",")]
    users = connect_users(max(sizes))
    reset_queue()
    add_entries([u for u, _ in users[: connect.LINE_OWNERS]], connect.LINE_WAITING)
    add_entries(
        [u for u, _ in users[: connect.LINE_RUNNING]], connect.LINE_RUNNING, status="running"
    )
    flush = redis.Redis.from_url(env["REDIS_URL"]).flushdb
    for n in sizes:
        for kind in ("ours", "bare"):
            load = os.getloadavg()[0]
            row = connect.connect_once(kind, env, users, n, flush)
            cpu = row["server_cpu_seconds"]
            print(
                f"{args.label:6} {kind:4} N={n:5}: {row['seconds']:.2f} s, {row['connected']}"
                f" connected, {row['failed']} failed, CPU {cpu:.2f} s"
                f" ({1000 * cpu / n:.2f} ms a socket), load {load:.1f} [{ROOT}]",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
