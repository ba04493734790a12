"""Rewrite docs/benchmarks.md and docs/benchmarks/fanout.png from one `make bench`.

The tables and the targets' verdicts are generated from the results; the analysis (what
limits what, what was changed and why) is bench/notes.md, included as is.
"""

from __future__ import annotations

from typing import Any

from bench import bulk
from bench.common import ROOT
from bench.queue_pg import WARM_UP

DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks" / "fanout.png"
NOTES = ROOT / "bench" / "notes.md"

COMMANDS = {
    "all": "make bench  (= .venv/bin/python scripts/stack.py bench = python -m bench.run)",
    "fanout": "python -m bench.run --runs 1 --only fanout --no-doc",
    "e2e": "python -m bench.run --runs 1 --only e2e --no-doc",
    "bytes": "python -m bench.run --runs 1 --only bytes --no-doc",
    "queue": "python -m bench.run --runs 1 --only queue --no-doc",
    "bulk": "python -m bench.run --runs 1 --only bulk --no-doc",
    "connect": "python -m bench.run --runs 1 --only connect --no-doc",
    "profile": "python -m bench.profile_fanout --kind ours --sockets 1000",
}


def _by_count(values: dict, count: int) -> Any:
    """values[count], keyed by int in a run's results or by str once read back from JSON."""
    return values.get(str(count), values.get(count))


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fanout_row(rows: list[dict[str, Any]], label_start: str, n: int) -> dict[str, Any] | None:
    for row in rows:
        if row["server"].startswith(label_start) and row["n"] == n:
            return row
    return None


def targets(run: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of issue 7's targets in one run."""
    out: list[tuple[str, str, bool | None]] = []
    rows = run.get("fanout", {}).get("rows", [])
    ours = fanout_row(rows, "ours, 1 daphne", 1000)
    ours = ours if ours and "PubSub" not in ours["server"] else None
    bare = fanout_row(rows, "bare", 1000)
    seed = fanout_row(rows, "seed", 1000)
    if ours and bare:
        ratio = ours["ms"]["median"] / bare["ms"]["median"]
        out.append(
            (
                "fan-out to 1,000: median <= 4x bare websockets",
                f"{_ms(ours['ms']['median'])} / {_ms(bare['ms']['median'])} ms = {ratio:.1f}x",
                ratio <= 4,
            )
        )
        ratio = ours["ms"]["p99"] / bare["ms"]["p99"]
        out.append(
            (
                "fan-out to 1,000: p99 <= 8x bare websockets",
                f"{_ms(ours['ms']['p99'])} / {_ms(bare['ms']['p99'])} ms = {ratio:.1f}x",
                ratio <= 8,
            )
        )
    for n in (1000, 5000):  # issue 14: at most twice the bare broadcast, median
        ours_n = fanout_row(rows, "ours, 1 daphne", n)
        bare_n = fanout_row(rows, "bare", n)
        if ours_n and bare_n and "PubSub" not in ours_n["server"]:
            ratio = ours_n["ms"]["median"] / bare_n["ms"]["median"]
            out.append(
                (
                    f"fan-out to {n:,}: median <= 2x bare websockets (`websockets.broadcast`)",
                    f"{_ms(ours_n['ms']['median'])} / {_ms(bare_n['ms']['median'])} ms"
                    f" = {ratio:.1f}x",
                    ratio <= 2,
                )
            )
    if ours and seed:
        speedup = seed["ms"]["median"] / ours["ms"]["median"]
        out.append(
            (
                "fan-out to 1,000: >= 10x faster than the seed design (median)",
                f"{_ms(seed['ms']['median'])} / {_ms(ours['ms']['median'])} ms = {speedup:.1f}x",
                speedup >= 10,
            )
        )
    if "bytes" in run:
        ratio = run["bytes"]["ratio"]
        out.append(
            (
                "bytes per event at queue length 1,000: < 1/50 of the seed design",
                f"{run['bytes']['ours']['bytes_per_event_per_client']:.0f} B vs "
                f"{run['bytes']['seed']['bytes_per_event_per_client']:.0f} B = 1/{1 / ratio:.0f}",
                ratio < 1 / 50,
            )
        )
    if "e2e" in run:
        p99 = run["e2e"]["ms"]["p99"]
        out.append(("end to end (scenario 2): p99 <= 100 ms", f"{_ms(p99)} ms", p99 <= 100))
    memory = idle_memory(rows, "ours, 1 daphne")
    for n, per in memory.items():
        out.append((f"idle socket at {n:,}: <= 40 KB", f"{per / 1024:.1f} KB", per <= 40 * 1024))
    queue = run.get("queue", {})
    for claimers, target in ((8, 20), (32, 50)):
        if "claims" not in queue:
            break
        p99 = _by_count(queue["claims"], claimers)["p99"]
        floor = _by_count(queue.get("claim_floor", {}), claimers)
        measured = f"{_ms(p99)} ms" + (f" (floor {_ms(floor['p99'])} ms)" if floor else "")
        out.append((f"claim p99 with {claimers} claimers <= {target} ms", measured, p99 <= target))
    if "enqueue" in queue:
        rate = queue["enqueue"]["per_second"]
        out.append(("single enqueues >= 500 a second", f"{rate:.0f} a second", rate >= 500))
    window = queue.get("window")
    if window:
        ms, own = window["snapshot_ms"]["median"], window["own_bytes"]
        rest = window["snapshot_bytes"] - own
        out.append(
            (
                f"a viewer's snapshot at {window['waiting']:,} waiting: <= 10 ms (median)",
                f"{_ms(ms)} ms",
                ms <= 10,
            )
        )
        out.append(
            (
                "... and <= 4 KB plus its own entries",
                f"{rest:,} B + {own:,} B its own",
                rest <= 4096,
            )
        )
        copy = window["bulk_event_bytes"]
        out.append(("its copy of a 2,000-entry bulk event <= 1 KB", f"{copy} B", copy <= 1024))
    for n, limit in ((1000, 1.0), (5000, 5.0)):
        ours, bare = connect_rows(run, n)
        if ours and bare:
            out.append(
                (
                    f"{n:,} sockets connecting at once hold their snapshots within {limit:g} s"
                    " (one daphne)",
                    f"{ours['seconds']:.2f} s (bare websockets {bare['seconds']:.2f} s)",
                    ours["seconds"] <= limit and ours["failed"] == 0,
                )
            )
    restart = run.get("connect", {}).get("restart")
    if restart:
        over = restart["seconds"]
        no_gap = restart["gaps"] == 0 and restart["live_after"] >= restart["n"]
        out.append(
            (
                f"a daphne restart with {restart['n']:,} resuming: over within 5 s, no gap"
                + (" (hand-over)" if restart.get("handover") else ""),
                ("never" if over is None else f"{over:.2f} s")
                + f", {restart['gaps']} gaps, {restart['resumed']:,} resumed",
                over is not None and over <= 5 and no_gap and restart["resumed"] >= restart["n"],
            )
        )
    if "positions" in queue:
        positions = queue["positions"]
        median = (positions.get("10000") or positions.get(10000))["median"]
        out.append(
            ("snapshot of 10,000 positions <= 50 ms (median)", f"{_ms(median)} ms", median <= 50)
        )
    out += bulk.targets(run)
    return out


def idle_memory(rows: list[dict[str, Any]], label: str) -> dict[int, float]:
    """Bytes of daphne RSS per idle socket, (RSS(N) - RSS(100)) / (N - 100)."""
    mine = [r for r in rows if r["server"] == label]
    base = next((r for r in mine if r["n"] == 100), None)
    if base is None:
        return {}
    return {
        r["n"]: (r["rss_bytes"] - base["rss_bytes"]) / (r["n"] - 100)
        for r in mine
        if r["n"] in (1000, 5000)
    }


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = ["-", "--"]
    colours: dict[str, str] = {}
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    for index, run in enumerate(results["runs"]):
        rows = run.get("fanout", {}).get("rows", [])
        for label in dict.fromkeys(r["server"] for r in rows):
            points = sorted((r["n"], r["ms"]["median"]) for r in rows if r["server"] == label)
            colour = colours.setdefault(label, palette[len(colours) % len(palette)])
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                styles[index % 2],
                marker="o",
                color=colour,
                label=f"{label} (run {run['number']})",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sockets (N)")
    ax.set_ylabel("median ms until the last socket has the event")
    ax.set_title("Fan-out of one queue event, 127.0.0.1, 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT)
    plt.close(fig)


def fanout_table(rows: list[dict[str, Any]]) -> list[str]:
    bare = {r["n"]: r for r in rows if r["kind"] == "bare"}
    lines = [
        "| server | N | median ms | p99 ms | delivered (worst event) | x bare (median) |"
        " daphne CPU us per socket-message | connect s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = bare.get(r["n"])
        ratio = f"{r['ms']['median'] / base['ms']['median']:.1f}" if base else "-"
        lines.append(
            f"| {r['server']} | {r['n']:,} | {_ms(r['ms']['median'])} | {_ms(r['ms']['p99'])} |"
            f" {r['delivered']:.3f} | {ratio} | {r['cpu_us_per_socket_message']:.0f} |"
            f" {r['connect_seconds']:.1f} |"
        )
    return lines


def connect_rows(run: dict[str, Any], n: int) -> tuple[dict | None, dict | None]:
    """Scenario 7's rows for ours and bare websockets at `n` sockets, in one run."""
    rows = run.get("connect", {}).get("rows", [])
    found = {row["kind"]: row for row in rows if row["n"] == n}
    return found.get("ours"), found.get("bare")


def connect_section(results: dict[str, Any]) -> list[str]:
    """Section 6: connecting, ours against bare websockets in each run."""
    out = [
        "## 7. Connecting: N sockets at once against a fresh daphne",
        "",
        "Each socket is a user of its own with an API token (`?token=`), and counts once it",
        "holds its snapshot (bare websockets: its first message); sockets spread over 2 client",
        "processes, 48 handshakes in flight in each. Queue: 1,000 waiting (100 owners among",
        "the connecting users, so most of their entries lie past the window's head) and 20",
        "running. Server CPU: daphne's (or bare websockets') user + system time meanwhile.",
        "",
        "| run | N | bare websockets s | ours s | x bare | ours CPU ms per socket"
        " | bare CPU ms per socket | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        sizes = sorted({row["n"] for row in run.get("connect", {}).get("rows", [])})
        for n in sizes:
            ours, bare = connect_rows(run, n)
            if not (ours and bare):
                continue
            out.append(
                f"| {run['number']} | {n:,} | {bare['seconds']:.2f} | {ours['seconds']:.2f} |"
                f" {ours['seconds'] / max(bare['seconds'], 1e-9):.1f} |"
                f" {ours['server_cpu_seconds'] / n * 1000:.2f} |"
                f" {bare['server_cpu_seconds'] / n * 1000:.2f} | {ours['failed']} |"
            )
    restarts = [
        (run["number"], r)
        for run in results["runs"]
        for r in (run["connect"].get("restart"), run["connect"].get("restart_cold"))
        if r
    ]
    if restarts:
        out += [
            "",
            "A restart: the largest N connected, then a deploy restarts daphne; one queue",
            "event commits as the old daphne stops (SIGTERM: it closes its port, then every",
            "socket with 1012); every client reconnects with `?last_seq=` as live.js does",
            "after 1012 (within 250 ms, then 250 ms doubling to 2 s while refused). Over when",
            "every socket holds the missed event, counted from the SIGTERM; then one more",
            "event, live. Hand-over (how a deploy runs, docs/deployment.md): the new daphne",
            "starts on the same port beside the old one (realtime.serve, SO_REUSEPORT) and is",
            "ready before the old one stops. Stop, then start (the baseline, run 1): nobody",
            "listens while the new daphne starts (until its ready line and `/healthz`).",
            "",
            "| run | restart | N | over s, from the stop | daphne stop s"
            " | new daphne's start s | resumed with the missed event | got the next | gaps |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for number, r in restarts:
            over = "never" if r["seconds"] is None else f"{r['seconds']:.2f}"
            how = "hand-over" if r.get("handover") else "stop, then start"
            when = "before the stop" if r.get("handover") else "after the stop"
            out.append(
                f"| {number} | {how} | {r['n']:,} | {over} |"
                f" {r['daphne_stop_seconds']:.2f} | {r['daphne_start_seconds']:.2f} ({when}) |"
                f" {r['resumed']:,} | {r['live_after']:,} | {r['gaps']} |"
            )
    return [*out, ""]


def write_report(results: dict[str, Any]) -> None:
    plot(results)
    info = results["info"]
    m, v = info["machine"], info["versions"]
    out = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {info['started']}; do not edit by hand. The tables come",
        "from the run; the analysis after them is bench/notes.md. How to run each benchmark:",
        "bench/README.md.",
        "",
        "## Machine and versions",
        "",
        f"- {m['cores']} cores, {m['cpu']}, {m['ram_gb']} GB RAM, Linux {m['kernel']}",
        "- load average (1, 5, 15 min) before each run: "
        + "; ".join(
            f"run {r['number']}: {', '.join(f'{x:.2f}' for x in r['load_before'])}"
            for r in results["runs"]
        )
        + f"; after: {', '.join(f'{x:.2f}' for x in info['load_after'])}",
        "- " + ", ".join(f"{name} {version}" for name, version in v.items()),
        "- every figure is measured in the same run as its baselines; the whole run is done"
        " twice (run 1, run 2), but for scenario 6 (a library over HTTP) and the seed"
        " design's fan-out (scenario 1), in run 1 only",
        "",
        "## Commands",
        "",
        *[f"- {name}: `{command}`" for name, command in COMMANDS.items()],
        "",
        "## Targets (issues 7, 13 and 14)",
        "",
        "| target | " + " | ".join(f"run {r['number']}" for r in results["runs"]) + " |",
        "|---|" + "---|" * len(results["runs"]),
    ]
    # By name: a scenario measured in one run only (bench.run's ONCE) has a row all the same.
    per_run = [
        {name: (measured, met) for name, measured, met in targets(run)} for run in results["runs"]
    ]
    for name in dict.fromkeys(name for verdicts in per_run for name in verdicts):
        cells = []
        for verdicts in per_run:
            if name not in verdicts:
                cells.append("not measured in this run")
                continue
            measured, met = verdicts[name]
            cells.append(f"{measured} {'met' if met else '**missed**'}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    seconds = [run.get("seconds", 0.0) for run in results["runs"]]
    total = sum(seconds) + info.get("setup_seconds", 0.0)
    out += [
        "",
        f"`make bench` in at most 10 minutes: {total / 60:.1f} minutes "
        f"({' + '.join(f'{s:.0f}' for s in seconds)} s for the runs, "
        f"{info.get('setup_seconds', 0.0):.0f} s set-up) "
        + ("met" if total <= 600 else "**missed**")
        + ".",
    ]
    out += [
        "",
        "## 1. Fan-out: one queue event to N sockets",
        "",
        "Time from the event's commit (ours, seed: an on_commit hook registered before the",
        "service's publish; bare: just before its Redis PUBLISH) until the last socket has",
        "it, over 20 events after 2 warm-up events, sockets spread over 2 client processes.",
        "The event is a real `line.entry_move()` in the bench process, a publisher process",
        "separate from daphne and the clients (a Celery worker adds task pick-up jitter of",
        "its own and calls the same publish path). Queue: 20 waiting.",
        "",
        "![fan-out time against N](benchmarks/fanout.png)",
        "",
    ]
    for run in results["runs"]:
        out += [f"### Run {run['number']}", "", *fanout_table(run["fanout"]["rows"]), ""]
    out += ["## 2. End to end under load", ""]
    out += [
        "| run | sockets | seconds | queue events | progress sent / received | delivered |"
        " p50 ms | p99 ms | daphne CPU % of one core |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        e = run["e2e"]
        out.append(
            f"| {run['number']} | {e['sockets']:,} | {e['seconds']:.0f} | {e['events']} |"
            f" {e['progress_sent']} / {e['progress_received']} | {e['delivered']:.4f} |"
            f" {_ms(e['ms']['median'])} | {_ms(e['ms']['p99'])} |"
            f" {e['daphne_cpu_percent']:.0f} |"
        )
    out += [
        "",
        "Five `line.entry_move()` a second, and a ProgressUpdate five times a second for",
        "each of 20 running transfers (the most the throttle lets through), from commit to",
        "receipt on every socket; one socket in a hundred is staff's.",
        "",
        "## 3. Memory per idle socket",
        "",
        "daphne RSS after the sockets have read their snapshots: (RSS(N) - RSS(100)) / (N - 100).",
        "",
        "| run | server | N | KB per idle socket |",
        "|---|---|---:|---:|",
    ]
    for run in results["runs"]:
        rows = run["fanout"]["rows"]
        for label in dict.fromkeys(r["server"] for r in rows):
            for n, per in idle_memory(rows, label).items():
                out.append(f"| {run['number']} | {label} | {n:,} | {per / 1024:.1f} |")
    out += ["", "## 4. The queue on PostgreSQL", ""]
    out += [
        "| run | enqueues a second (with synchronous commit) | claim p50 / p99 ms (the floor's),"
        " 1 claimer | 8 claimers | 32 claimers |"
        " positions of 1,000 / 10,000 / 100,000 (median ms) | whole snapshot of 10,000 for"
        " an anonymous viewer, queue_snapshot_for (median ms) | move at 10,000 p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        q = run["queue"]

        claims = [_by_count(q["claims"], k) for k in (1, 8, 32)]
        floors = [_by_count(q.get("claim_floor", {}), k) for k in (1, 8, 32)]
        positions = [_by_count(q["positions"], k)["median"] for k in (1000, 10000, 100000)]
        durable = q.get("enqueue_synchronous")
        durable_rate = f" ({durable['per_second']:.0f})" if durable else ""
        out.append(
            f"| {run['number']} | {q['enqueue']['per_second']:.0f}{durable_rate} | "
            + " | ".join(
                f"{_ms(c['median'])} / {_ms(c['p99'])}"
                + (f" ({_ms(f['median'])} / {_ms(f['p99'])})" if f else "")
                for c, f in zip(claims, floors, strict=True)
            )
            + f" | {' / '.join(_ms(p) for p in positions)}"
            f" | {_ms(q['snapshot_10000']['median'])}"
            f" | {_ms(q['move_10000']['median'])} / {_ms(q['move_10000']['p99'])} |"
        )
    out += [
        "",
        "A viewer's window (protocol version 2) at 100,000 waiting, against version 1's whole"
        " line for the same viewer, and a bulk of 2,000 (`line.entries_enqueue`) by another"
        " user:",
        "",
        "| run | window snapshot median / p99 ms | its bytes (its own 3 entries) |"
        " whole line ms / bytes | bulk of 2,000 ms | a viewer's copy of the bulk event B"
        " (runs) | version 1's copy B |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        w = run["queue"].get("window")
        if not w:
            continue
        out.append(
            f"| {run['number']} | {_ms(w['snapshot_ms']['median'])} /"
            f" {_ms(w['snapshot_ms']['p99'])} | {w['snapshot_bytes']:,} ({w['own_bytes']:,})"
            f" | {w['baseline_snapshot_ms']:.0f} / {w['baseline_snapshot_bytes']:,}"
            f" | {w['bulk_ms']:.0f} | {w['bulk_event_bytes']} ({w['bulk_event_runs']})"
            f" | {w['baseline_bulk_event_bytes']:,} |"
        )
    out += [
        "",
        "Claimers are separate processes, each with its own connection, started together;",
        "each claim is `transfers.transfer_claim_next()` (queue lock, SKIP LOCKED, event,"
        " publish), 50 by each of 1 and 8 claimers, 25 by each of 32, measured after each"
        f" claimer's first {WARM_UP} (the first lap: every claimer released at one instant),"
        " and every claimer stays until all have finished (bench/notes.md, \"The claims'"
        " tail\"). The first lap's claims apart: "
        + "; ".join(
            f"run {run['number']}: "
            + ", ".join(
                f"{k} claimers median {_ms(c['median'])} / max {_ms(c['max'])} ms"
                for k in (8, 32)
                if (c := _by_count(run["queue"].get("claims_start", {}), k))
            )
            for run in results["runs"]
            if run["queue"].get("claims_start")
        )
        + ". In brackets, the floor (its first lap not counted either):"
        " the same processes, as many times and all together, each running the least a"
        " serialised change can be (a row locked and updated, a row inserted, committed"
        " asynchronously, in one round trip: `bench.queue_pg.LOCK_FLOOR_SQL`), the baseline"
        " for what the machine's cores allow.",
        "Changes commit asynchronously (`QUEUE_SYNCHRONOUS_COMMIT`, off by default); the"
        " enqueues are measured that way and, in brackets, with synchronous commit: 5 rounds"
        " of 400 from one process, the median round's rate (each round's in the raw results).",
        "Positions: `selectors.entry_positions()` (the window function), 20 times each.",
        "",
        "## 5. Bytes per event per client at a queue length of 1,000",
        "",
        "| run | ours B | seed design B | ratio |",
        "|---|---:|---:|---:|",
    ]
    for run in results["runs"]:
        b = run["bytes"]
        out.append(
            f"| {run['number']} | {b['ours']['bytes_per_event_per_client']:.0f} |"
            f" {b['seed']['bytes_per_event_per_client']:.0f} | 1/{1 / b['ratio']:.0f} |"
        )
    out += ["", "Wire bytes (frame headers included), 20 events, 20 sockets each.", ""]
    out += bulk.report_section(results["runs"])
    if any("connect" in run for run in results["runs"]):
        out += connect_section(results)
    out += [NOTES.read_text().rstrip(), ""]
    DOC.write_text("\n".join(out))
