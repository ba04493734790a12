"""The default uploader on the filesystem storage and its share links, with range requests
as video players use them (S3: tests/storage)."""

from __future__ import annotations

import hashlib
import os

import pytest

from queue_app.integrations.recordings import recording_name
from queue_app.integrations.uploaders import StorageUploader, get_uploader
from queue_app.share import parse_range

# The share link checks who may open it (Meeting.share_access): a database read.
pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_BASE_URL = "https://queue.example.com"
    return settings.MEDIA_ROOT


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "in.mp4"
    path.write_bytes(os.urandom(200_000))
    return path


def test_upload_stores_a_copy_behind_an_unguessable_link(media, video, client):
    result = get_uploader().upload(video, title="Weekly sync", description="d")
    assert result.backend == "storage"
    assert result.share_url.startswith("https://queue.example.com/share/")
    token = result.share_url.rsplit("/", 1)[1]
    assert len(token) >= 32
    response = client.get(f"/share/{token}")
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Accept-Ranges"] == "bytes"
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).digest() == hashlib.sha256(video.read_bytes()).digest()


def test_range_requests_return_the_asked_bytes(media, video, client):
    token = StorageUploader().upload(video, title="t", description="").share_url.rsplit("/", 1)[1]
    data = video.read_bytes()
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=1000-": (1000, 199_999),
        "bytes=-500": (199_500, 199_999),
        "bytes=199990-300000": (199_990, 199_999),
    }
    for header, (start, end) in cases.items():
        response = client.get(f"/share/{token}", HTTP_RANGE=header)
        assert response.status_code == 206, header
        assert response["Content-Range"] == f"bytes {start}-{end}/200000"
        assert b"".join(response.streaming_content) == data[start : end + 1]
    for header in ("bytes=200000-", "bytes=-0"):
        response = client.get(f"/share/{token}", HTTP_RANGE=header)
        assert response.status_code == 416, header
        assert response["Content-Range"] == "bytes */200000"
    # RFC 9110 14.2: another unit, an invalid range or several are ignored: the whole video.
    for header in ("bytes=5-2", "items=0-1", "bytes=0-1,5-6"):
        response = client.get(f"/share/{token}", HTTP_RANGE=header)
        assert response.status_code == 200, header
        assert b"".join(response.streaming_content) == data


def test_unknown_or_malformed_share_tokens_are_404(media, client):
    assert client.get("/share/" + "a" * 43).status_code == 404
    assert client.get("/share/..%2F..%2Fsettings").status_code == 404
    assert recording_name("../../etc/passwd") is None
    assert client.post("/share/" + "a" * 43).status_code == 405


def test_parse_range_edges():
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=-20", 10) == (0, 9)
    assert parse_range("bytes=", 10) is None
