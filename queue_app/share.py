"""Serving shared videos from the recordings storage, with HTTP range requests.

A recording on this machine's disk (RECORDINGS_STORAGE=filesystem) is served from here.
Video players seek with `Range: bytes=a-b`; Django's FileResponse always sends the whole
file, so this view answers ranges itself, as RFC 9110 (14.1-14.2) asks: 206 for a single
satisfiable range, 416 for an unsatisfiable one, and the whole file (200) for a Range it
ignores (another unit, a malformed or invalid range, several ranges).

A recording in object storage (S3) is not proxied: the link answers with a redirect to a
signed URL of the object, good for AWS_QUERYSTRING_EXPIRE seconds, and the player's range
requests go to the storage itself (docs/uploaders.md says why).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from django.core.files.storage import Storage
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.views.decorators.http import require_safe

from queue_app.integrations.recordings import local_path, recording_name, recordings_storage

logger = logging.getLogger(__name__)

# One range of bytes; the unit is case-insensitive. [0-9], not \d: int() would read
# other scripts' digits too.
RANGE_PATTERN = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
CHUNK_SIZE = 64 * 1024
# A position of more digits is past the end of any file. Longer ones are compared, never
# converted: int() refuses more than 4300 digits (a 500), and would be slow before that.
MAX_DIGITS = 18
PAST_ANY_END = 10**MAX_DIGITS


class Unsatisfiable(Exception):
    """A valid range that starts past the end of the file: 416."""


def _file_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else PAST_ANY_END


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive of the single `bytes=` range in `header`, clamped to `size`.

    None when the header is to be ignored (the whole file is sent): another unit, not one
    well-formed range, or a last position before the first. Raises Unsatisfiable when no
    byte of the file is asked for: a start at or past its end, or an empty suffix.
    """
    match = RANGE_PATTERN.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        length = _position(last)
        if length == 0:
            raise Unsatisfiable
        return max(size - length, 0), size - 1
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid (RFC 9110 14.1.1): ignored, as 14.2 allows
    if start >= size:
        raise Unsatisfiable
    end = min(_position(last), size - 1) if last else size - 1
    return start, end


def _whole(path: Path) -> FileResponse:
    response = FileResponse(open(path, "rb"), content_type="video/mp4")  # noqa: SIM115
    response["Accept-Ranges"] = "bytes"
    return response


def serve_recording(request: HttpRequest, token: str) -> HttpResponse:
    """The video behind a share token, for a GET or HEAD: from this machine's disk with
    ranges, or a redirect to a signed URL in the object storage. 404 for an unknown or
    malformed token. Pages that embed the video call this for the raw file."""
    name = recording_name(token)
    if name is None:
        raise Http404("No such video.")
    storage = recordings_storage()
    path = local_path(storage, name)
    if path is None:
        return _redirect_to_storage(request, storage, name)
    if not path.is_file():
        raise Http404("No such video.")
    return _serve_file(request, path)


@require_safe
def share(request: HttpRequest, token: str) -> HttpResponse:
    return serve_recording(request, token)


def _redirect_to_storage(request: HttpRequest, storage: Storage, name: str) -> HttpResponse:
    from botocore.exceptions import BotoCoreError, ClientError
    from storages.backends.s3 import S3Storage

    try:
        if not storage.exists(name):
            raise Http404("No such video.")
        if isinstance(storage, S3Storage):
            # Signed for this request's method: S3 checks it (HEAD needs its own signature).
            url = storage.url(name, http_method=request.method)
        else:
            url = storage.url(name)
    except (BotoCoreError, ClientError):
        logger.warning("the recordings storage did not answer a share link")
        response = HttpResponse(
            "The video storage is unavailable; try again shortly.",
            status=503,
            content_type="text/plain",
        )
        response["Retry-After"] = "5"
        return response
    response = HttpResponseRedirect(url)
    # The signed URL expires: neither the browser nor a proxy may keep this answer.
    response["Cache-Control"] = "no-store"
    return response


def _serve_file(request: HttpRequest, path: Path) -> HttpResponse:
    size = path.stat().st_size
    header = request.headers.get("Range")
    if not header:
        return _whole(path)
    try:
        byte_range = parse_range(header, size)
    except Unsatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    if byte_range is None:
        return _whole(path)
    start, end = byte_range
    length = end - start + 1
    response = StreamingHttpResponse(
        _file_range(path, start, length), status=206, content_type="video/mp4"
    )
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    return response
