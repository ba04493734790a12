"""A viewer's window snapshot at 100,000 waiting (scenario 4's "window snapshot"), this
tree's selectors against another commit's, alternated in one process, 20 calls a turn:

    DATABASE_URL=postgres://.../fathomloom_<name>_bench REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python -m bench.window_ab --before 2ec40ae [--rounds 5]

The other commit's queue_app/selectors.py and estimates.py are imported beside this
tree's (git show into a temporary directory), so both read the same database in the same
minutes. The line is filled once (100,000 entries, as scenario 4 leaves it, and the
viewer's 3 entries enqueued by fair share); also timed: the hub's widest snapshot and
one burst's own entries past the head (selectors.own_entries_past_head_of).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT


def load_old(commit: str, directory: Path) -> Any:
    """The commit's selectors module, using that commit's estimates."""
    for name in ("selectors", "estimates"):
        text = subprocess.run(
            ["git", "show", f"{commit}:queue_app/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        if name == "selectors":
            text = text.replace(
                "from queue_app import estimates, events, sql",
                "from queue_app import events, sql\nimport old_estimates as estimates",
            )
        (directory / f"old_{name}.py").write_text(text)
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location("old_selectors", directory / "old_selectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from bench.run import bench_env

    env = bench_env()
    from bench.setup_data import ensure_database, migrate

    ensure_database(env["DATABASE_URL"])
    import django

    django.setup()
    migrate()
    from django.contrib.auth import get_user_model

    from bench.queue_pg import queued_count, vacuum
    from bench.setup_data import add_entries, reset_queue, users_and_tokens
    from queue_app import selectors
    from queue_app.models import Meeting
    from queue_app.services import line

    User = get_user_model()
    if queued_count() < 100_000:
        reset_queue()
        regular, _ = users_and_tokens()
        add_entries([user for user, _ in regular], 100_000)
        vacuum()
        viewer, _ = User.objects.get_or_create(username="bench-window-viewer")
        add_entries([viewer.pk], 3, status="cancelled")
        for meeting in Meeting.objects.filter(owner=viewer)[:3]:
            line.entry_enqueue(meeting=meeting)
    viewer = User.objects.get(username="bench-window-viewer")
    with tempfile.TemporaryDirectory() as directory:
        old = load_old(args.before, Path(directory))
        seq = selectors.current_seq()
        calls = {
            "viewer's window": (
                lambda: old.queue_snapshot_for(viewer),
                lambda: selectors.queue_snapshot_for(viewer),
            ),
            "widest (the hub's)": (old.queue_snapshot, selectors.queue_snapshot),
            "own entries past the head": (
                lambda: old.own_entries_past_head_of([viewer.pk], seq),
                lambda: selectors.own_entries_past_head_of([viewer.pk], seq),
            ),
        }
        for before, after in calls.values():
            a, b = before(), after()
            for value in (a, b):
                if isinstance(value, dict):
                    value.pop("timestamp", None)
            assert a == b, "the two commits read different snapshots"
        print(f"waiting {selectors.queue_state().waiting:,}, load {os.getloadavg()}")
        for name, (before, after) in calls.items():
            times: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                for label, call in (("before", before), ("after", after)):
                    for _ in range(20):
                        started = time.perf_counter()
                        call()
                        times[label].append((time.perf_counter() - started) * 1000)
            for label, values in times.items():
                values.sort()
                p10, p90 = values[len(values) // 10], values[9 * len(values) // 10]
                print(
                    f"{name:28} {label:6}: median {statistics.median(values):5.2f} ms,"
                    f" p10 {p10:5.2f}, p90 {p90:5.2f}"
                )
        print(f"load after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
