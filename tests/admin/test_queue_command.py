"""`manage.py queue`: operators run the queue from a terminal through the same services,
so every change is one event that open pages hear."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from queue_app.models import EntryStatus, QueueEntry, QueueEvent, QueueState
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers

pytestmark = pytest.mark.django_db


def queue(*args: str) -> str:
    out = StringIO()
    call_command("queue", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fail(entry: QueueEntry, kind: str) -> None:
    """Run `entry` (it must be at the head) and fail it for good with an error of `kind`."""
    claimed = transfers.transfer_claim_next()
    assert claimed.pk == entry.pk
    transfers.transfer_begin(entry_id=entry.pk, worker="w")
    failure = Failure(f"{kind} happened", transient=False, kind=kind)
    transfers.transfer_retry_or_fail(entry_id=entry.pk, worker="w", failure=failure)


def last_update_types(n: int) -> list[str]:
    events = QueueEvent.objects.order_by("-seq")[:n]
    return [event.update_type for event in reversed(events)]


def test_status_shows_counts_running_and_the_head(alice, bob, make_meeting):
    first = line.entry_enqueue(meeting=make_meeting(alice, "Kick-off"))
    line.entry_enqueue(meeting=make_meeting(bob, "Retro"))
    line.entry_enqueue(meeting=make_meeting(bob, "Planning"))
    transfers.transfer_claim_next()
    transfers.transfer_begin(entry_id=first.pk, worker="host:7")

    out = queue("status", "--head", "1")

    assert "The queue is running." in out
    assert "queued: 2" in out and "running: 1" in out
    assert "Kick-off" in out and "host:7" in out
    assert "      1  " in out and "Retro" in out
    assert "Planning" not in out and "... and 1 more waiting" in out


def test_pause_and_resume_are_queue_events():
    assert queue("pause") == "Paused.\n"
    assert queue("pause") == "The queue was already paused.\n"
    assert QueueState.objects.get().paused
    assert queue("resume") == "Resumed.\n"
    assert last_update_types(2) == ["queue_paused", "queue_resumed"]


def test_retry_every_failed_entry_of_a_kind_and_owner(alice, bob, make_meeting):
    entries = []
    for owner, kind in zip(
        (alice, alice, bob), ["fathom_rejected", "upload_failed", "fathom_rejected"], strict=True
    ):
        entries.append(line.entry_enqueue(meeting=make_meeting(owner)))
        fail(entries[-1], kind)

    out = queue("retry", "--failed", "--error-kind", "fathom_rejected", "--owner", "alice")

    assert out == "Retried 1 entry.\n"
    statuses = [QueueEntry.objects.get(pk=e.pk).status for e in entries]
    assert statuses == [EntryStatus.QUEUED, EntryStatus.FAILED, EntryStatus.FAILED]
    assert last_update_types(1) == ["task_retried"]
    assert queue("retry", "--failed") == "Retried 2 entries.\n"


def test_cancel_a_users_waiting_entries_and_refusals_are_reported(alice, bob, make_meeting):
    mine = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(2)]
    theirs = line.entry_enqueue(meeting=make_meeting(bob))

    assert queue("cancel", "--waiting", "--owner", "alice") == "Cancelled 2 entries.\n"
    assert {QueueEntry.objects.get(pk=e.pk).status for e in mine} == {EntryStatus.CANCELLED}
    assert QueueEntry.objects.get(pk=theirs.pk).status == EntryStatus.QUEUED
    with pytest.raises(CommandError, match="1 refused"):
        queue("cancel", str(mine[0].pk))
    with pytest.raises(CommandError, match="needs --owner"):
        queue("cancel", "--waiting")


def test_move_and_its_refusals(alice, make_meeting):
    entries = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3)]
    assert queue("move", str(entries[2].pk), "top") == f"Moved {entries[2].pk} to position 1.\n"
    assert queue("move", str(entries[2].pk), "2") == f"Moved {entries[2].pk} to position 2.\n"
    with pytest.raises(CommandError, match="between 1 and 3"):
        queue("move", str(entries[0].pk), "9")
    with pytest.raises(CommandError, match="whole number"):
        queue("move", str(entries[0].pk), "²")
    with pytest.raises(CommandError, match="No such queue entry"):
        queue("move", "nope", "1")
    assert [
        str(e.pk) for e in QueueEntry.objects.filter(status="queued").order_by("order_key")
    ] == [str(entries[0].pk), str(entries[2].pk), str(entries[1].pk)]
