"""The one seam from queue_app to realtime: committed events and progress leave here.

queue_app builds every message (queue_app.events); realtime.publisher only carries it
to the hubs, which redact and deliver. No other queue_app module imports realtime
(tests/test_import_graph.py).
"""

from __future__ import annotations

from uuid import UUID

from django.utils import timezone

from queue_app.events import event_message, progress_message
from queue_app.models import QueueEvent
from realtime import publisher


def publish_event(event: QueueEvent) -> None:
    """Send a committed event to every socket. Called from transaction.on_commit only."""
    publisher.publish_queue_event(event_message(event))


def publish_progress(
    *, entry_id: UUID | str, owner_id: int, stage: str, progress: float, worker: str = ""
) -> bool:
    """Send a ProgressUpdate to the entry's owner and to staff; False if coalesced away.

    Progress is ephemeral: no seq, not logged. The latest stored value is in snapshots.
    """
    return publisher.publish_progress(
        progress_message(
            entry_id=str(entry_id),
            owner_id=owner_id,
            stage=stage,
            progress=progress,
            worker=worker,
            now=timezone.now(),
        )
    )
