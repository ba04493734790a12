"""Where transferred videos go: an upload interface with pluggable backends.

Loom has no public upload API (docs/uploaders.md), so the default backend keeps the
video under MEDIA_ROOT and this service serves it at an unguessable share link. A
backend is any class with `upload(path, *, title, description) -> UploadResult`,
named by the UPLOADER_BACKEND setting.
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.urls import reverse
from django.utils.module_loading import import_string

SHARE_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


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


def shares_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "shares"


def share_path(token: str) -> Path | None:
    """The stored file for a share token, or None for a malformed token."""
    if not SHARE_TOKEN_PATTERN.match(token):
        return None
    return shares_dir() / f"{token}.mp4"


class LocalUploader:
    """Keeps the video under MEDIA_ROOT/shares and serves it at /share/<token>."""

    name = "local"

    def upload(self, path: Path, *, title: str, description: str) -> UploadResult:
        token = secrets.token_urlsafe(32)
        destination = share_path(token)
        assert destination is not None
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_suffix(".part")
        try:
            shutil.copyfile(path, partial)
            partial.replace(destination)  # atomic: a share link never serves half a file
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UploadError(f"Could not store the video: {exc.strerror}.") from exc
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        return UploadResult(
            share_url=f"{base}{reverse('share', args=[token])}",
            backend=self.name,
            details={"size": destination.stat().st_size, "title": title},
        )


def get_uploader() -> Uploader:
    return import_string(settings.UPLOADER_BACKEND)()
