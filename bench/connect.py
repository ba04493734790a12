"""Scenario 6: connecting. N sockets open at once against a freshly started server, each
counted when it holds its first message (ours: its snapshot), against bare websockets
(its greeting) in the same run.

Every socket is a user of its own (bench/setup_data.connect_users), authenticated with its
API token, so nothing one socket needs was read for another: what a reconnect storm
after a deploy looks like, where every client is someone else. The line holds 1,000
waiting entries of 100 of those users (so many have entries past the window's head, read
for their snapshot) and 20 running.
"""

from __future__ import annotations

from typing import Any

from bench.fanout import Clients, socket_targets, start_server

LINE_WAITING = 1000
LINE_RUNNING = 20
LINE_OWNERS = 100


def connect_once(
    kind: str, env: dict[str, str], tokens: list[tuple[int, str]], n: int, redis_flush: Any
) -> dict[str, Any]:
    """A fresh server of `kind`, then `n` sockets at once: how long until all hold their
    first message, and the server's CPU meanwhile."""
    redis_flush()
    server = start_server(kind, env, 1)
    clients = Clients(env)
    try:
        cpu_before = server.cpu()
        got = clients.connect(socket_targets(server, 0, n, tokens))
        cpu = server.cpu() - cpu_before
        open_now = clients.open_sockets()
    finally:
        clients.close()
        server.stop()
    return {
        "kind": kind,
        "n": n,
        "seconds": got["seconds"],
        "connected": got["connected"],
        "failed": got["failed"],
        "open": open_now,
        "server_cpu_seconds": cpu,
    }


def scenario_connect(
    env: dict[str, str],
    tokens: list[tuple[int, str]],
    sizes: list[int],
    log: Any,
    redis_flush: Any,
) -> dict[str, Any]:
    rows = []
    for n in sizes:
        for kind in ("bare", "ours"):
            row = connect_once(kind, env, tokens, n, redis_flush)
            rows.append(row)
            log(
                f"  connect {kind:4} N={n:5}: {row['seconds']:.2f} s, {row['connected']}"
                f" connected, {row['failed']} failed, server CPU {row['server_cpu_seconds']:.2f} s"
            )
    return {"rows": rows, "line": {"waiting": LINE_WAITING, "running": LINE_RUNNING}}
