"""Scenario 7: connecting. N sockets open at once against a freshly started server, each
counted when it holds its first message (ours: its snapshot), against bare websockets
(its greeting) in the same run.

Every socket is a user of its own (bench/setup_data.connect_users), authenticated with its
API token, so nothing one socket needs was read for another: what a reconnect storm
after a deploy looks like, where every client is someone else. The line holds 1,000
waiting entries of 100 of those users (so many have entries past the window's head, read
for their snapshot) and 20 running.
"""

from __future__ import annotations

import time
from typing import Any

from bench.fanout import Clients, Publisher, socket_targets, start_server

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
    restart: int = 0,
    cold_restart: bool = False,
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
    result = {"rows": rows, "line": {"waiting": LINE_WAITING, "running": LINE_RUNNING}}
    if restart:
        result["restart"] = scenario_restart(env, tokens, restart, log, redis_flush)
        if cold_restart:  # the baseline: nobody listens while the new daphne starts
            result["restart_cold"] = scenario_restart(
                env, tokens, restart, log, redis_flush, handover=False
            )
    return result


def scenario_restart(
    env: dict[str, str],
    tokens: list[tuple[int, str]],
    n: int,
    log: Any,
    redis_flush: Any,
    *,
    handover: bool = True,
) -> dict[str, Any]:
    """`n` sockets on one daphne; a deploy restarts it, one queue event commits as the old
    daphne stops, and every client reconnects with ?last_seq= (wsclient's resume mode,
    with live.js' rule after 1012). Over when every socket holds that missed event,
    counted from the old daphne's SIGTERM; no gap when no socket saw a hole in its seqs,
    and a live event after it reaches every socket too.

    `handover` (how a deploy runs, docs/deployment.md): the new daphne starts beside the
    old one on the same port (realtime.serve, SO_REUSEPORT) and is ready before the old
    one is stopped (SIGTERM: it closes its port, then every socket with 1012). Otherwise
    (the baseline): the old one stops, then the new one starts, while nobody listens."""
    from bench.common import LOG_DIR, ROOT
    from devtools import processes

    redis_flush()
    server = start_server("ours", env, 1)
    clients = Clients(env)
    publisher = Publisher(env["REDIS_URL"], seed=17)
    entry_ids = publisher.queued_ids()
    restarted = None

    def start_new() -> tuple[Any, float]:
        began = time.monotonic()
        process, _ = processes.start_daphne(
            {**env, "CHANNEL_LAYER_BACKEND": "core"},
            "ours-daphne-restarted",
            log_dir=LOG_DIR,
            cwd=ROOT,
            port=server.ports[0],
            keep_lines=2000,
        )
        return process, time.monotonic() - began

    try:
        connected = clients.connect(socket_targets(server, 0, n, tokens))
        seq, _ = publisher.move(entry_ids)
        clients.wait(seq, 15.0)  # every socket live
        clients.ask_all({"cmd": "resume", "on": True})
        if handover:
            restarted, start_seconds = start_new()
        stopped_at = time.monotonic()
        server.stop()
        down_at = time.monotonic()
        missed, _ = publisher.move(entry_ids)  # commits while the old one is gone
        if not handover:
            restarted, start_seconds = start_new()
        up_at = time.monotonic() if not handover else down_at
        got = clients.wait(missed, 30.0, expect=connected["connected"])
        live, _ = publisher.move(entry_ids)
        after = clients.wait(live, 15.0, expect=connected["connected"])
        stats = clients.ask_all({"cmd": "stats"})
    finally:
        clients.close()
        if restarted is not None:
            restarted.stop()
        server.stop()
    result = {
        "n": n,
        "handover": handover,
        "connected": connected["connected"],
        "daphne_stop_seconds": down_at - stopped_at,
        "daphne_start_seconds": start_seconds,
        "seconds": (got["last"] - stopped_at) if got["last"] is not None else None,
        "seconds_from_up": (got["last"] - up_at) if got["last"] is not None else None,
        "resumed": got["count"],
        "live_after": after["count"],
        "gaps": sum(s["gaps"] for s in stats),
        "reconnects": sum(s["reconnects"] for s in stats),
        "open": sum(s["open"] for s in stats),
    }
    seconds = "never" if result["seconds"] is None else f"{result['seconds']:.2f} s"
    how = "hand-over" if handover else "stop, then start"
    log(
        f"  restart ({how}) with {n} resuming: over in {seconds} from the stop (daphne"
        f" stopped in {result['daphne_stop_seconds']:.2f} s, the new one started in"
        f" {result['daphne_start_seconds']:.2f} s), {result['resumed']} got the missed event,"
        f" {result['live_after']} the next, {result['gaps']} gaps"
    )
    return result
