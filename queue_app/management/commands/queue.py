"""`manage.py queue`: the queue from a terminal, for operators.

Every change goes through the same services as the admin, the monitor and the API, so it
takes the queue lock, is one event, and every open page sees it live.

    manage.py queue status [--head N]
    manage.py queue pause [--note TEXT] | resume
    manage.py queue retry ENTRY_ID... | --failed [--error-kind K] [--owner U]
    manage.py queue cancel ENTRY_ID... | --waiting --owner U   [--note TEXT]
    manage.py queue move ENTRY_ID POSITION [--note TEXT] (a number from 1, top or bottom)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from queue_app import selectors
from queue_app.errors import ApplicationError
from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import activity, line


class Command(BaseCommand):
    help = "Look at and run the queue: status, pause, resume, retry, cancel, move."

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        status = verbs.add_parser("status", help="Counts, running transfers, the head.")
        status.add_argument("--head", type=int, default=10, help="How many waiting to list.")
        pause = verbs.add_parser("pause", help="Stop handing out work; running transfers finish.")
        pause.add_argument("--note", default="", help="Why, shown to everyone waiting.")
        verbs.add_parser("resume", help="Hand out work again.")
        retry = verbs.add_parser("retry", help="Put failed or cancelled entries back in line.")
        retry.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
        retry.add_argument("--failed", action="store_true", help="Every failed entry...")
        retry.add_argument("--error-kind", help="...whose last attempt failed with this kind")
        retry.add_argument("--owner", help="...of this user (username)")
        cancel = verbs.add_parser("cancel", help="Take entries out of the line.")
        cancel.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
        cancel.add_argument("--waiting", action="store_true", help="Every waiting entry...")
        cancel.add_argument("--owner", help="...of this user (username); required with it")
        cancel.add_argument("--note", default="", help="Why, for the owners (they are emailed).")
        move = verbs.add_parser("move", help="Move a queued entry to a position.")
        move.add_argument("entry_id", metavar="ENTRY_ID")
        move.add_argument("position", help="1 is the front; or top, bottom")
        move.add_argument("--note", default="", help="Why, for the owner.")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"do_{verb}")(**options)

    # --- verbs -------------------------------------------------------------------------------

    def do_status(self, *, head: int, **_: Any) -> None:
        state = selectors.queue_state()
        counts = selectors.queue_counts()
        self.stdout.write(f"The queue is {'PAUSED' if state.paused else 'running'}.")
        self.stdout.write("  ".join(f"{status}: {counts[status]}" for status in counts))
        now = timezone.now()
        running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).select_related(
            "meeting", "owner"
        )
        for entry in running.order_by("started_at"):
            elapsed = int((now - entry.started_at).total_seconds()) if entry.started_at else 0
            self.stdout.write(
                f"running  {entry.pk}  {entry.owner.get_username()}  {entry.meeting}  "
                f"{entry.stage or 'starting'} {entry.progress:.0%}  {elapsed}s  "
                f"{entry.worker or '(no worker yet)'}"
            )
        waiting = selectors.queued_entries().select_related("meeting", "owner")
        for position, entry in enumerate(waiting[: max(head, 0)], start=1):
            self.stdout.write(
                f"{position:>7}  {entry.pk}  {entry.owner.get_username()}  {entry.meeting}"
            )
        more = counts[EntryStatus.QUEUED] - max(head, 0)
        if more > 0:
            self.stdout.write(f"... and {more} more waiting")

    def do_pause(self, *, note: str, **_: Any) -> None:
        try:
            changed = line.queue_pause(note=note)
        except ApplicationError as exc:
            raise CommandError(f"--note: {exc.detail}") from None
        self.stdout.write("Paused." if changed else "The queue was already paused.")

    def do_resume(self, **_: Any) -> None:
        changed = line.queue_resume()
        self.stdout.write("Resumed." if changed else "The queue was not paused.")

    def do_retry(
        self,
        *,
        entry_ids: list[str],
        failed: bool,
        error_kind: str | None,
        owner: str | None,
        **_: Any,
    ) -> None:
        if failed == bool(entry_ids):
            raise CommandError("Name entries, or pass --failed (not both).")
        if not failed and (error_kind or owner):
            raise CommandError("--error-kind and --owner go with --failed.")
        ids = entry_ids or [
            str(pk)
            for pk in selectors.failed_entries(error_kind=error_kind, owner=owner).values_list(
                "pk", flat=True
            )
        ]
        self._each("Retried", ids, lambda pk: line.entry_retry(entry_id=pk))

    def do_cancel(
        self, *, entry_ids: list[str], waiting: bool, owner: str | None, note: str, **_: Any
    ) -> None:
        if waiting == bool(entry_ids):
            raise CommandError("Name entries, or pass --waiting --owner USER (not both).")
        try:
            note = activity.clean_note(note)
        except ApplicationError as exc:
            raise CommandError(f"--note: {exc.detail}") from None
        if waiting and not owner:
            # Clearing everyone's line is the admin's "Clear the queue": deliberate, elsewhere.
            raise CommandError("--waiting needs --owner USER.")
        ids = entry_ids or [
            str(pk) for pk in selectors.waiting_entries(owner=owner).values_list("pk", flat=True)
        ]
        self._each("Cancelled", ids, lambda pk: line.entry_cancel(entry_id=pk, note=note))

    def do_move(self, *, entry_id: str, position: str, note: str, **_: Any) -> None:
        if position not in ("top", "bottom"):
            if not (position.isascii() and position.isdigit()):
                raise CommandError("POSITION is a whole number from 1, top or bottom.")
            position = int(position)
        try:
            entry = line.entry_move(entry_id=entry_id, position=position, note=note)
        except ApplicationError as exc:
            raise CommandError(f"{entry_id}: {exc.detail}") from None
        place = selectors.entry_position(entry)
        self.stdout.write(f"Moved {entry.pk} to position {place}.")

    def _each(self, done: str, ids: Iterable[str], call: Callable[[str], Any]) -> None:
        """Apply `call` to each entry, one change each; report refusals and go on."""
        succeeded, refused = 0, []
        for pk in ids:
            try:
                call(pk)
            except ApplicationError as exc:
                refused.append(f"{pk}: {exc.detail}")
            else:
                succeeded += 1
        self.stdout.write(f"{done} {succeeded} entr{'y' if succeeded == 1 else 'ies'}.")
        for line_ in refused:
            self.stderr.write(line_)
        if refused:
            raise CommandError(f"{len(refused)} refused.")
