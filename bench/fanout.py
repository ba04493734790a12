"""Scenarios 1, 2, 3 and 5: fan-out, end to end under load, idle memory, bytes per event.

Servers under test, each started fresh:
- "bare":   bench/bare_ws.py, baseline (a);
- "seed":   bench/seed_asgi.py on daphne, baseline (b);
- "ours":   fathomloom.asgi on one or two daphne processes (the hub; core or PubSub layer).
Events come from this process (a publisher separate from daphne and the clients): for
"ours" and "seed" a real line.entry_move() on the bench database, timed from the commit
(an on_commit hook registered before the service's own publish hook); for "bare" a Redis
PUBLISH of an event of the same size. Sockets live in separate client processes
(bench/wsclient.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.common import ROOT, Process, start_daphne, summary, wait_for_port
from devtools.processes import free_port

BARE_CHANNEL = "bench:bare"
CLIENT_PROCESSES = 2


class Clients:
    """A few wsclient processes; sockets are spread over them round-robin."""

    def __init__(self, env: dict[str, str], count: int = CLIENT_PROCESSES) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.wsclient"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                env=env,
                text=True,
            )
            for _ in range(count)
        ]
        self.opened = 0

    def _ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for proc, command in zip(self.procs, commands, strict=True):
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        return [json.loads(proc.stdout.readline()) for proc in self.procs]

    def ask_all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return self._ask([command] * len(self.procs))

    def connect(self, targets: list[tuple[int, str]]) -> dict[str, Any]:
        shares: list[list[tuple[int, str]]] = [[] for _ in self.procs]
        for index, target in enumerate(targets):
            shares[(self.opened + index) % len(self.procs)].append(target)
        answers = self._ask([{"cmd": "connect", "targets": share} for share in shares])
        self.opened += len(targets)
        return {
            "connected": sum(a["connected"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "seconds": max(a["seconds"] for a in answers),
        }

    def wait(self, seq: int, timeout: float, expect: int = 0) -> dict[str, Any]:
        """Until every open socket has `seq` (at least `expect` of them in all)."""
        share = -(-expect // len(self.procs))  # sockets are spread round-robin
        answers = self.ask_all({"cmd": "wait", "seq": seq, "timeout": timeout, "expect": share})
        lasts = [a["last"] for a in answers if a["last"] is not None]
        return {
            "count": sum(a["count"] for a in answers),
            "open": sum(a["open"] for a in answers),
            "last": max(lasts) if lasts else None,
            "bytes": sum(a["bytes"] for a in answers),
        }

    def open_sockets(self) -> int:
        return sum(a["open"] for a in self.ask_all({"cmd": "stats"}))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask_all({"cmd": "close"})
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- the servers ---------------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # bare | seed | ours
    processes: list[Process]
    ports: list[int]
    label: str
    pids: list[int] = field(default_factory=list)

    def rss(self) -> int:
        return sum(psutil.Process(pid).memory_info().rss for pid in self.pids)

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        return total

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


_CORE_LAYERS: dict[str, Any] | None = None


def use_layer(layer: str) -> None:
    """Make this (publishing) process use the same channel layer as the servers."""
    global _CORE_LAYERS
    from channels.layers import channel_layers
    from django.conf import settings

    if _CORE_LAYERS is None:
        _CORE_LAYERS = settings.CHANNEL_LAYERS
    if layer == "pubsub":
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": settings.REDIS_URL}],
                    "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "fathomloom"),
                },
            }
        }
    else:
        settings.CHANNEL_LAYERS = _CORE_LAYERS
    channel_layers.backends = {}


def start_server(kind: str, env: dict[str, str], daphnes: int = 1, layer: str = "core") -> Server:
    use_layer(layer)
    if kind == "bare":
        port = free_port()
        process = Process(
            "bare-ws",
            [sys.executable, "-m", "bench.bare_ws", str(port), env["REDIS_URL"], BARE_CHANNEL],
            env,
        )
        wait_for_port(port)
        return Server(kind, [process], [port], "bare websockets", [process.pid])
    app = "bench.seed_asgi:application" if kind == "seed" else "fathomloom.asgi:application"
    server_env = {**env, "CHANNEL_LAYER_BACKEND": layer}
    started = [start_daphne(server_env, f"{kind}-daphne-{i}", app) for i in range(daphnes)]
    if kind == "seed":
        label = "seed design (Channels consumer per socket)"
    else:
        label = f"ours, {daphnes} daphne" + (", PubSub layer" if layer == "pubsub" else "")
    return Server(
        kind,
        [p for p, _ in started],
        [port for _, port in started],
        label,
        [p.pid for p, _ in started],
    )


# --- events --------------------------------------------------------------------------------


class Publisher:
    """Makes one queue event at a time and says when it was committed."""

    def __init__(self, redis_url: str, seed: int = 7) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.random = random.Random(seed)
        self.bare_seq = 0

    def queued_ids(self) -> list[str]:
        from queue_app.models import EntryStatus, QueueEntry

        return [
            str(pk)
            for pk in QueueEntry.objects.filter(status=EntryStatus.QUEUED).values_list(
                "id", flat=True
            )
        ]

    def move(self, entry_ids: list[str]) -> tuple[int, float]:
        """One line.entry_move(); (seq, monotonic time of its commit)."""
        from django.db import transaction

        from queue_app.models import QueueState
        from queue_app.services import line

        committed: list[float] = []
        entry_id = self.random.choice(entry_ids)
        position = self.random.randint(1, len(entry_ids))
        with transaction.atomic():
            # Runs right after COMMIT, before the service's own hook publishes the event.
            transaction.on_commit(lambda: committed.append(time.monotonic()))
            line.entry_move(entry_id=entry_id, position=position)
        seq = QueueState.objects.values_list("last_seq", flat=True).get(pk=1)
        return seq, committed[0]

    def event(self, kind: str, entry_ids: list[str], bare_text: str) -> tuple[int, float]:
        if kind == "bare":
            self.bare_seq += 1
            text = bare_text.replace('"seq": 0', f'"seq": {self.bare_seq}', 1)
            started = time.monotonic()
            self.redis.publish(BARE_CHANNEL, text)
            return self.bare_seq, started
        seq, committed = self.move(entry_ids)
        if kind == "seed":
            from bench.seed_asgi import SEED_GROUP, whole_queue
            from realtime.publisher import publish_to_group

            publish_to_group(SEED_GROUP, {"type": "queue.update", "message": whole_queue(seq)})
        return seq, committed


def bare_event_text() -> str:
    """A redacted QueueUpdate as ours sends it to most sockets, with seq 0 to fill in."""
    return json.dumps(
        {
            "type": "QueueUpdate",
            "update_type": "position_updated",
            "seq": 0,
            "queue": [
                {
                    "id": "0b7f6c1e-3a51-4f0e-9d7e-2f7d3c1a9b10",
                    "position": 17,
                    "status": "queued",
                    "mine": False,
                }
            ],
            "affected_user_id": None,
            "global_position": 17,
            "queue_length": 70,
            "paused": False,
            "timestamp": "2025-01-01T12:00:00.000000Z",
        }
    )


def socket_targets(
    server: Server, start: int, count: int, tokens: list[tuple[int, str]]
) -> list[tuple[int, str]]:
    targets = []
    for i in range(start, start + count):
        port = server.ports[i % len(server.ports)]
        if server.kind == "bare":
            targets.append((port, "/"))
        else:
            targets.append((port, f"/queue_updates?token={tokens[i % len(tokens)][1]}"))
    return targets


def fan_out_series(
    server: Server,
    clients: Clients,
    publisher: Publisher,
    tokens: list[tuple[int, str]],
    sizes: list[int],
    events: int,
    timeout: float,
    log: Any,
) -> list[dict[str, Any]]:
    """Grow the sockets to each N in `sizes`; at each, time `events` events to all of them."""
    entry_ids = publisher.queued_ids() if server.kind != "bare" else []
    bare_text = bare_event_text()
    rows = []
    have = 0
    for size in sizes:
        connect = clients.connect(socket_targets(server, have, size - have, tokens))
        have = size
        open_now = clients.open_sockets()
        time.sleep(0.5)  # let connection set-up work drain before measuring
        rss = server.rss()
        latencies, fractions = [], []
        for _ in range(2):  # warm-up, not counted
            seq, _t0 = publisher.event(server.kind, entry_ids, bare_text)
            clients.wait(seq, timeout)
        cpu_before = server.cpu()
        for _ in range(events):
            seq, t0 = publisher.event(server.kind, entry_ids, bare_text)
            got = clients.wait(seq, timeout)
            fractions.append(got["count"] / max(open_now, 1))
            if got["last"] is not None:
                latencies.append((got["last"] - t0) * 1000)
            time.sleep(0.05)
        cpu = server.cpu() - cpu_before
        row = {
            "server": server.label,
            "kind": server.kind,
            "daphnes": len(server.ports),
            "n": size,
            "open": open_now,
            "connect_seconds": connect["seconds"],
            "connect_failed": connect["failed"],
            "rss_bytes": rss,
            "ms": summary(latencies),
            "delivered": min(fractions) if fractions else 0.0,
            "delivered_mean": sum(fractions) / len(fractions) if fractions else 0.0,
            "cpu_us_per_socket_message": cpu / (events * max(open_now, 1)) * 1e6,
        }
        log(
            f"  {server.label:45} N={size:5} open={open_now:5} median "
            f"{row['ms']['median']:8.1f} ms p99 {row['ms']['p99']:8.1f} ms delivered "
            f"{row['delivered']:.3f} cpu {row['cpu_us_per_socket_message']:.0f} us/msg "
            f"rss {rss / 2**20:.0f} MB (connect {connect['seconds']:.1f} s)"
        )
        rows.append(row)
    return rows


def scenario_fan_out(
    env: dict[str, str],
    tokens: list[tuple[int, str]],
    sizes: list[int],
    seed_sizes: list[int],
    layer_sizes: list[int],
    events: int,
    log: Any,
    redis_flush: Any,
) -> dict[str, Any]:
    """Scenario 1 (and 3: idle RSS at each N for ours on one daphne)."""
    publisher = Publisher(env["REDIS_URL"])
    configs: list[tuple[str, int, str, list[int]]] = [
        ("bare", 1, "core", sizes),
        ("ours", 1, "core", sizes),
        ("ours", 2, "core", sizes),
        ("ours", 1, "pubsub", layer_sizes),
        ("seed", 1, "core", seed_sizes),
    ]
    rows: list[dict[str, Any]] = []
    for kind, daphnes, layer, ns in configs:
        if not ns:
            continue
        redis_flush()
        server = start_server(kind, env, daphnes, layer)
        clients = Clients(env)
        try:
            rows += fan_out_series(
                server,
                clients,
                publisher,
                tokens,
                ns,
                events,
                timeout=60.0 if kind == "seed" else 15.0,
                log=log,
            )
        finally:
            clients.close()
            server.stop()
    return {"rows": rows}


def scenario_end_to_end(
    env: dict[str, str],
    tokens: list[tuple[int, str]],
    staff: tuple[int, str],
    running: list[tuple[str, int]],
    sockets: int,
    seconds: float,
    log: Any,
    redis_flush: Any,
    progress: bool = True,
) -> dict[str, Any]:
    """Scenario 2: `sockets` sockets, 5 moves a second and progress of the running entries."""
    from queue_app.broadcast import publish_progress

    redis_flush()
    publisher = Publisher(env["REDIS_URL"], seed=11)
    entry_ids = publisher.queued_ids()
    server = start_server("ours", env, 1)
    clients = Clients(env)
    try:
        # One socket in a hundred is staff's: it receives every entry in full and all progress.
        pool = [staff if i % 100 == 0 else tokens[i % len(tokens)] for i in range(sockets)]
        clients.connect(socket_targets(server, 0, sockets, pool))
        open_now = clients.open_sockets()
        time.sleep(1.0)
        clients.ask_all({"cmd": "keep_times", "on": True})
        commits: dict[int, float] = {}
        progress_sent = 0
        cpu_before, wall_before = server.cpu(), time.monotonic()
        start = time.monotonic()
        ticks = int(seconds * 5)
        for tick in range(ticks):
            delay = start + tick * 0.2 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            seq, committed = publisher.move(entry_ids)
            commits[seq] = committed
            for entry_id, owner_id in running if progress else []:
                progress_sent += publish_progress(
                    entry_id=entry_id,
                    owner_id=owner_id,
                    stage="downloading",
                    progress=(tick % 100) / 100,
                )
        last_seq = max(commits)
        clients.wait(last_seq, 10.0)
        cpu = server.cpu() - cpu_before
        wall = time.monotonic() - wall_before
        times: dict[str, list[float]] = {}
        for answer in clients.ask_all({"cmd": "times", "since": min(commits)}):
            for seq, values in answer.items():
                times.setdefault(seq, []).extend(values)
        latencies = []
        received = 0
        for seq, committed in commits.items():
            values = times.get(str(seq), [])
            received += len(values)
            latencies += [(t - committed) * 1000 for t in values]
        stats = clients.ask_all({"cmd": "stats"})
    finally:
        clients.close()
        server.stop()
    result = {
        "sockets": open_now,
        "seconds": seconds,
        "events": len(commits),
        "progress_sent": progress_sent,
        "progress_received": sum(s["other_messages"] for s in stats),
        "delivered": received / (len(commits) * max(open_now, 1)),
        "ms": summary(latencies),
        "p50_ms": summary(latencies)["median"],
        "daphne_cpu_percent": cpu / wall * 100,
        "closed": sum(s["closed"] for s in stats),
    }
    log(
        f"  end to end: {open_now} sockets, {len(commits)} events, {progress_sent} progress;"
        f" p50 {result['ms']['median']:.1f} ms p99 {result['ms']['p99']:.1f} ms,"
        f" delivered {result['delivered']:.4f}, daphne CPU {result['daphne_cpu_percent']:.0f}%"
    )
    return result


def scenario_bytes(
    env: dict[str, str],
    tokens: list[tuple[int, str]],
    sockets: int,
    events: int,
    log: Any,
    redis_flush: Any,
) -> dict[str, Any]:
    """Scenario 5: wire bytes per event per client, ours against the seed design."""
    publisher = Publisher(env["REDIS_URL"], seed=13)
    entry_ids = publisher.queued_ids()
    result: dict[str, Any] = {"queue_length": len(entry_ids)}
    for kind in ("ours", "seed"):
        redis_flush()
        server = start_server(kind, env, 1)
        clients = Clients(env, 1)
        try:
            clients.connect(socket_targets(server, 0, sockets, tokens))
            open_now = clients.open_sockets()
            total_bytes = total_count = 0
            for _ in range(events):
                seq, _ = publisher.event(kind, entry_ids, "")
                got = clients.wait(seq, 30.0)
                total_bytes += got["bytes"]
                total_count += got["count"]
        finally:
            clients.close()
            server.stop()
        result[kind] = {
            "sockets": open_now,
            "events": events,
            "bytes_per_event_per_client": total_bytes / max(total_count, 1),
        }
        log(
            f"  bytes at queue length {len(entry_ids)}: {kind} "
            f"{result[kind]['bytes_per_event_per_client']:.0f} B per event per client"
        )
    result["ratio"] = (
        result["ours"]["bytes_per_event_per_client"] / result["seed"]["bytes_per_event_per_client"]
    )
    return result


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default)
