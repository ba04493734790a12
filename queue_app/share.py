"""Serving shared videos stored by the local uploader, with HTTP range requests.

Video players seek with `Range: bytes=a-b`; Django's FileResponse always sends the
whole file, so this view answers ranges itself, as RFC 9110 (14.1-14.2) asks: 206 for a
single satisfiable range, 416 for an unsatisfiable one, and the whole file (200) for a
Range it ignores (another unit, a malformed or invalid range, several ranges).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from queue_app.integrations.uploaders import share_path

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


@require_safe
def share(request: HttpRequest, token: str) -> HttpResponse:
    path = share_path(token)
    if path is None or not path.is_file():
        raise Http404("No such video.")
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
