"""Serving shared videos stored by the local uploader, with HTTP range requests.

Video players seek with `Range: bytes=a-b`; Django's FileResponse always sends the
whole file, so this view answers ranges itself (206, or 416 when unsatisfiable).
"""

from __future__ import annotations

import re

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from queue_app.integrations.uploaders import share_path

RANGE_PATTERN = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK_SIZE = 64 * 1024


def _file_range(path, start: int, length: int):
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single `bytes=` range, or None if unsatisfiable."""
    match = RANGE_PATTERN.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0:
            return None
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


@require_safe
def share(request: HttpRequest, token: str) -> HttpResponse:
    path = share_path(token)
    if path is None or not path.is_file():
        raise Http404("No such video.")
    size = path.stat().st_size
    header = request.headers.get("Range")
    if not header:
        response = FileResponse(open(path, "rb"), content_type="video/mp4")  # noqa: SIM115
        response["Accept-Ranges"] = "bytes"
        return response
    byte_range = parse_range(header, size)
    if byte_range is None:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    start, end = byte_range
    length = end - start + 1
    response = StreamingHttpResponse(
        _file_range(path, start, length), status=206, content_type="video/mp4"
    )
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    return response
