"""One transfer, Fathom to uploader: request the download, wait, stream it, upload it.

`run_transfer` does the work for an entry its worker has begun and raises on failure:
TransferFailed (transient or not) or TransferCancelled. What to do about a failure
(retry later, fail now, email the owner) is the Celery task's business.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from queue_app import download_callbacks
from queue_app.accounts import fathom_account_of, fathom_api_key_for, fathom_client_for
from queue_app.broadcast import publish_progress
from queue_app.crypto import CredentialDecryptError
from queue_app.importing import meeting_set_media_kind
from queue_app.integrations.fathom import (
    DownloadStatus,
    FathomClient,
    FathomError,
    parse_download_status,
)
from queue_app.integrations.uploaders import UploadError, upload_recording
from queue_app.models import QueueEntry
from queue_app.retry_policy import Failure
from queue_app.services import transfers

logger = logging.getLogger(__name__)

STAGE_REQUESTING = "requesting"
STAGE_DOWNLOADING = "downloading"
STAGE_UPLOADING = "uploading"


# A database that cannot be reached (restarting, failing over): psycopg's errors as Django
# raises them. Any other DatabaseError is a bug.
DATABASE_ERRORS = (OperationalError, InterfaceError)
DATABASE_UNREACHABLE = (
    "The database was unreachable during the transfer (a restart or failover); "
    "it is tried again shortly."
)


def reconnect() -> None:
    """Drop this thread's database connection. One that the server dropped stays dead
    (every query fails) until closed; the next query then opens a new one."""
    # Closing a dead connection can fail too; it is dropped either way.
    with contextlib.suppress(DatabaseError):
        connection.close()


class TransferFailed(Exception):
    """A transfer that stopped. `reason` is for the owner to read; no secrets in it."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        kind: str = "transfer_failed",
    ):
        super().__init__(reason)
        self.failure = Failure(reason, transient=transient, retry_after=retry_after, kind=kind)


class TransferCancelled(Exception):
    """The entry was cancelled or taken back while we worked on it: stop quietly."""


class LeaseKeeper:
    """Renews a running entry's lease every QUEUE_HEARTBEAT_SECONDS from a thread of its own.

    A transfer waiting on Fathom (a slow answer, a download that stalls) reports no
    progress, and its lease must not run out while its worker lives: the reaper would
    hand the entry to a second worker. A dead worker's keeper dies with it, so its lease
    runs out. A live worker cannot keep an entry forever either: every network call has
    a timeout and the task a hard time limit. `lost` turns True once the entry was
    cancelled or taken back; Progress.report then stops the transfer.
    """

    def __init__(self, *, entry_id: UUID | str, worker: str) -> None:
        self.entry_id = entry_id
        self.worker = worker
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(settings.QUEUE_HEARTBEAT_SECONDS):
                try:
                    alive = transfers.transfer_heartbeat(entry_id=self.entry_id, worker=self.worker)
                except DatabaseError:
                    logger.warning("entry %s: could not renew the lease", self.entry_id)
                    reconnect()  # a connection the server dropped would fail every tick
                    continue  # the next tick tries again, well inside the lease
                if not alive:
                    self.lost = True
                    return
        finally:
            connection.close()  # this thread's own connection


@dataclass
class Progress:
    """Reports stage and fraction: stores and publishes progress, and stops the transfer
    once its LeaseKeeper found the entry cancelled or taken back.

    The database write and the lease renewal happen at most every few seconds; the
    live ProgressUpdate is coalesced to 5 a second by publish_progress.
    """

    entry_id: UUID
    owner_id: int
    worker: str
    lease: LeaseKeeper | None = None
    stage: str = ""
    fraction: float = 0.0
    _stored_at: float = float("-inf")

    def report(self, stage: str, fraction: float, *, force: bool = False) -> None:
        if self.lease is not None and self.lease.lost:
            raise TransferCancelled()
        changed_stage = stage != self.stage
        self.stage, self.fraction = stage, min(max(fraction, 0.0), 1.0)
        now = time.monotonic()
        if (
            force
            or changed_stage
            or now - self._stored_at >= min(settings.QUEUE_HEARTBEAT_SECONDS, 2.0)
        ):
            self._stored_at = now
            try:
                alive = transfers.transfer_store_progress(
                    entry_id=self.entry_id, worker=self.worker, stage=stage, progress=self.fraction
                )
            except DATABASE_ERRORS:
                # Stored progress is for display, and the LeaseKeeper keeps the lease on a
                # connection of its own: a database blip need not stop the transfer.
                logger.warning("entry %s: could not store progress; carrying on", self.entry_id)
                reconnect()
                alive = True
            if not alive:
                raise TransferCancelled()
        publish_progress(
            entry_id=self.entry_id,
            owner_id=self.owner_id,
            stage=stage,
            progress=self.fraction,
            worker=self.worker,
        )


def _fathom_client(entry: QueueEntry) -> FathomClient:
    try:
        api_key = fathom_api_key_for(entry.owner_id)
    except CredentialDecryptError as exc:
        raise TransferFailed(
            "Your saved Fathom API key can no longer be read: connect your account again,"
            " then retry.",
            transient=False,
            kind="credentials",
        ) from exc
    if not api_key:
        raise TransferFailed(
            "Your Fathom account is not connected: add your API key, then retry.",
            transient=False,
            kind="credentials",
        )
    return fathom_client_for(api_key)


def _description(entry: QueueEntry) -> str:
    meeting = entry.meeting
    parts = [meeting.meeting_title or meeting.title]
    if meeting.recording_start_time:
        parts.append(f"Recorded {meeting.recording_start_time:%Y-%m-%d %H:%M} UTC")
    if meeting.share_url:
        parts.append(f"Fathom: {meeting.share_url}")
    return "\n".join(part for part in parts if part)


@dataclass(frozen=True)
class Transferred:
    """A finished transfer: where the recording is shared, how many bytes it moved, and
    what it moved: "video", or "audio" for a recording Fathom has no video of."""

    share_url: str
    bytes_moved: int
    media_kind: str = "video"


def run_transfer(*, entry_id: UUID | str, worker: str) -> Transferred:
    """Move one begun entry's recording to the uploader."""
    try:
        entry = QueueEntry.objects.select_related("meeting", "owner").get(pk=entry_id)
        with LeaseKeeper(entry_id=entry.id, worker=worker) as lease:
            progress = Progress(
                entry_id=entry.id, owner_id=entry.owner_id, worker=worker, lease=lease
            )
            progress.report(STAGE_REQUESTING, 0.0, force=True)
            with _fathom_client(entry) as client:
                return _download_and_upload(client, entry, progress)
    except FathomError as exc:
        raise TransferFailed(
            exc.reason, transient=exc.transient, retry_after=exc.retry_after, kind=exc.kind
        ) from exc
    except UploadError as exc:
        raise TransferFailed(exc.reason, transient=exc.transient, kind=exc.kind) from exc
    except DATABASE_ERRORS as exc:
        reconnect()
        raise TransferFailed(
            DATABASE_UNREACHABLE, transient=True, kind="database_unreachable"
        ) from exc


def _download_and_upload(
    client: FathomClient, entry: QueueEntry, progress: Progress
) -> Transferred:
    recording_id = entry.meeting.recording_id
    ready = _ready_download(client, entry, progress)
    media, kind = ready.media, ready.media_kind
    if media is None or kind is None:  # parse_download_status refuses such an answer
        raise TransferFailed(
            "Fathom said the download is ready but gave no file.",
            transient=True,
            kind="fathom_malformed",
        )
    meeting_set_media_kind(meeting=entry.meeting, media_kind=kind)
    suffix = ".m4a" if kind == "audio" else ".mp4"
    with tempfile.TemporaryDirectory(prefix="fathomloom-") as folder:
        progress.report(STAGE_DOWNLOADING, 0.0)
        downloaded = client.download_video(
            media.url,
            Path(folder) / f"{recording_id}{suffix}",
            expected_size=media.file_size_bytes,
            on_progress=lambda done, total: progress.report(
                STAGE_DOWNLOADING, done / total if total else 0.0
            ),
        )
        logger.info(
            "entry %s: downloaded %s bytes (sha256 %s…)",
            entry.id,
            downloaded.size,
            downloaded.sha256[:16],
        )
        progress.report(STAGE_UPLOADING, 0.0)
        result = upload_recording(
            downloaded.path,
            title=str(entry.meeting),
            description=_description(entry),
            # One object per entry, whatever the attempt: a retry overwrites, never orphans.
            key=str(entry.id),
            on_progress=lambda done, total: progress.report(
                STAGE_UPLOADING, done / total if total else 0.0
            ),
        )
    progress.report(STAGE_UPLOADING, 1.0, force=True)
    return Transferred(share_url=result.share_url, bytes_moved=downloaded.size, media_kind=kind)


def _ready_download(client: FathomClient, entry: QueueEntry, progress: Progress) -> DownloadStatus:
    """Fathom's completed download of the entry's recording: its first answer when that is
    already complete, else the callback Fathom POSTs (when one was asked for) and, if none
    comes within FATHOM_CALLBACK_WAIT_SECONDS, polling."""
    recording_id = entry.meeting.recording_id
    account = fathom_account_of(entry.owner_id)
    destination = download_callbacks.callback_url_for(account)
    first = client.request_download(recording_id, destination_url=destination)
    ready = client.settle_download(first, recording_id)
    if ready is not None:
        return ready
    if destination is not None and account is not None:
        body = download_callbacks.callback_wait(
            account_id=account.pk,
            download_id=first.download_id,
            timeout=settings.FATHOM_CALLBACK_WAIT_SECONDS,
            on_tick=lambda: progress.report(STAGE_REQUESTING, 0.0),
        )
        if body is not None:
            # Verified and parsed by the receiver already; parsed again here, as bytes
            # from Redis are not trusted blindly.
            pushed = parse_download_status(download_callbacks.decode(body))
            if pushed.download_id == first.download_id:
                ready = client.settle_download(pushed, recording_id)
                if ready is not None:
                    return ready
        else:
            logger.info(
                "entry %s: no download callback within %g s; polling Fathom",
                entry.id,
                settings.FATHOM_CALLBACK_WAIT_SECONDS,
            )
    return client.wait_for_download(
        recording_id,
        first.download_id,
        poll_interval=settings.FATHOM_POLL_INTERVAL_SECONDS,
        on_poll=lambda status: progress.report(STAGE_REQUESTING, 0.0),
    )
