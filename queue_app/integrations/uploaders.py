"""Where transferred videos go: an upload interface with pluggable backends.

Loom has no public upload API (docs/uploaders.md), so the default backend keeps the
video in the `recordings` storage (MEDIA_ROOT, or an S3 bucket: RECORDINGS_STORAGE) and
this service serves it at an unguessable share link. A backend is any class with
`upload(path, *, title, description) -> UploadResult`, named by the UPLOADER_BACKEND
setting; one that also takes `key` (stable across the attempts of one entry) and
`on_progress(done, total)` is given them.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage
from django.urls import reverse
from django.utils.module_loading import import_string

from queue_app.integrations.recordings import (
    abort_unfinished_uploads,
    recording_name,
    recordings_storage,
    share_token,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
# How often a running upload reports its progress (the caller stores it at most every 2 s).
PROGRESS_SECONDS = 1.0
# S3 answers that trying again will not change: the bucket or the credentials are wrong.
REFUSALS = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
    }
)


class UploadError(Exception):
    """An upload that did not succeed. `transient` says whether trying again may help."""

    kind = "upload_failed"

    def __init__(self, reason: str, *, transient: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class UploadResult:
    share_url: str
    backend: str
    details: dict[str, Any] = field(default_factory=dict)


class Uploader(Protocol):
    def upload(self, path: Path, *, title: str, description: str) -> UploadResult: ...


class _Stopped(Exception):
    """The caller stopped the upload (its entry was cancelled or taken back)."""


class _CountingReader:
    """A file read by a storage: counts the bytes read, and fails the next read once
    `stop` is set, so that the storage gives up (S3: aborts its multipart upload)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.done = 0
        self.stop = threading.Event()

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise _Stopped
        data = self.handle.read(size)
        self.done += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.handle.closed

    def close(self) -> None:
        """The uploader closes the file it opened, not the storage."""


def _failure(exc: BaseException) -> UploadError:
    """An UploadError for the owner to read: the kind of failure, no names or keys."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in REFUSALS:
            return UploadError(
                f"The recordings storage refused the video ({code}): its bucket or "
                "credentials need fixing; staff can then retry.",
                transient=False,
            )
        return UploadError(f"The recordings storage did not take the video ({code or 'error'}).")
    if isinstance(exc, NoCredentialsError):
        return UploadError(
            "The recordings storage has no credentials configured; staff can retry once it has.",
            transient=False,
        )
    if isinstance(exc, OSError):
        return UploadError(f"Could not store the video: {exc.strerror or type(exc).__name__}.")
    return UploadError(f"The recordings storage could not be reached ({type(exc).__name__}).")


STORAGE_ERRORS = (OSError, BotoCoreError, ClientError, Boto3Error)


class StorageUploader:
    """Keeps the video in the recordings storage and serves it at /share/<token>.

    The file is streamed from the worker's disk: to the filesystem in 64 KiB chunks, to
    S3 in 8 MiB parts (a multipart upload; settings.STORAGES). With a `key`, every attempt
    writes the same object; an attempt that fails deletes what it wrote, and one that
    follows a crash first aborts the multipart upload the crashed one left.
    """

    name = "storage"

    def upload(
        self,
        path: Path,
        *,
        title: str,
        description: str,
        key: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> UploadResult:
        token = share_token(key)
        name = recording_name(token)
        assert name is not None
        storage = recordings_storage()
        size = path.stat().st_size
        try:
            abort_unfinished_uploads(storage, name)
            with open(path, "rb") as handle:
                reader = _CountingReader(handle)
                stored = _save(storage, name, reader, size, on_progress)
            stored_size = storage.size(stored)
        except STORAGE_ERRORS as exc:
            failure = _failure(exc)
            logger.warning("recording upload failed: %s", failure.reason)
            _discard(storage, name)
            raise failure from exc
        if stored != name:  # a storage that renames instead of overwriting would orphan
            _discard(storage, stored)
            raise UploadError(
                "The recordings storage kept the video under another name; it must be "
                "configured to overwrite (RECORDINGS_STORAGE sets that up).",
                transient=False,
            )
        if stored_size != size:
            _discard(storage, name)
            raise UploadError(f"The stored video has {stored_size} bytes, not {size}.")
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        return UploadResult(
            share_url=f"{base}{reverse('share', args=[token])}",
            backend=self.name,
            details={"size": size, "title": title},
        )


# The name UPLOADER_BACKEND had before recordings went through the storage API.
LocalUploader = StorageUploader


def _save(
    storage: Storage,
    name: str,
    reader: _CountingReader,
    size: int,
    on_progress: ProgressCallback | None,
) -> str:
    content = File(reader, name=name)
    if on_progress is None:
        return storage.save(name, content)
    # The storage writes from a thread of its own while this one reports progress: the
    # callback touches the database, which Django ties to the thread that opened it.
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["name"] = storage.save(name, content)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    writer = threading.Thread(target=run, name="recording-upload", daemon=True)
    writer.start()
    try:
        while not done.wait(PROGRESS_SECONDS):
            on_progress(min(reader.done, size), size)
    except BaseException:
        reader.stop.set()  # the storage's next read fails; it cleans up its own part
        writer.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    on_progress(size, size)
    return outcome["name"]


def _discard(storage: Storage, name: str) -> None:
    """Delete what a failed attempt wrote (a partial file); the failure stays the news."""
    try:
        storage.delete(name)
    except STORAGE_ERRORS:
        logger.warning("could not delete a failed upload's recording")


def get_uploader() -> Uploader:
    return import_string(settings.UPLOADER_BACKEND)()


def _accepts(function: Callable[..., Any], parameter: str) -> bool:
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == parameter or p.kind is p.VAR_KEYWORD for p in parameters)


def upload_recording(
    path: Path,
    *,
    title: str,
    description: str,
    key: str,
    on_progress: ProgressCallback | None = None,
) -> UploadResult:
    """Upload with the configured backend, giving it `key` and `on_progress` if it takes
    them: backends written to the first interface keep working."""
    uploader = get_uploader()
    extra: dict[str, Any] = {}
    if _accepts(uploader.upload, "key"):
        extra["key"] = key
    if on_progress is not None and _accepts(uploader.upload, "on_progress"):
        extra["on_progress"] = on_progress
    return uploader.upload(path, title=title, description=description, **extra)
