"""The default uploader on S3 (moto's server, a real S3-protocol process): uploads go in
parts, one object per entry whatever the attempt, nothing left behind by a crash or a
failure, and share links that play from the bucket with ranges."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError
from django.core.files.storage import storages

from queue_app.integrations import uploaders
from queue_app.integrations.recordings import recording_name, share_token
from queue_app.integrations.uploaders import StorageUploader, UploadError
from tests.storage.conftest import s3_storage_entry

MiB = 1024 * 1024
pytestmark = pytest.mark.django_db


def video_of(tmp_path: Path, size: int, name: str = "in.mp4") -> Path:
    path = tmp_path / name
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * MiB))
            out.write(chunk)
            remaining -= len(chunk)
    return path


def token_of(share_url: str) -> str:
    return share_url.rsplit("/", 1)[1]


def test_a_recording_goes_to_the_bucket_in_parts_and_nothing_to_disk(s3_recordings, tmp_path):
    video = video_of(tmp_path, 20 * MiB)
    result = StorageUploader().upload(video, title="Weekly sync", description="", key="entry-1")

    token = token_of(result.share_url)
    assert result.share_url == f"https://queue.example.com/share/{token}"
    key = recording_name(token)
    assert s3_recordings.keys() == [key]
    head = s3_recordings.client.head_object(Bucket=s3_recordings.name, Key=key)
    # A multipart upload's ETag ends with its number of parts: 8 + 8 + 4 MiB.
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "video/mp4"
    assert s3_recordings.read(key) == video.read_bytes()
    assert result.details["size"] == 20 * MiB
    assert not (tmp_path / "media").exists()


def test_an_upload_holds_a_few_parts_in_memory_not_the_recording(s3_recordings, tmp_path):
    uploader = StorageUploader()
    # Warm up: boto3 loads its service models (several MiB) on first use.
    uploader.upload(video_of(tmp_path, 1000, "tiny.mp4"), title="t", description="", key="w")
    peaks = {}
    for size in (40 * MiB, 120 * MiB):
        video = video_of(tmp_path, size, f"{size}.mp4")
        tracemalloc.start()
        try:
            uploader.upload(video, title="t", description="", key=f"entry-{size}")
            peaks[size] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        video.unlink()
    # At most 4 parts of 8 MiB are read ahead (settings/storage.py): three times the
    # recording costs no more memory, and far less than the recording itself.
    assert peaks[120 * MiB] < peaks[40 * MiB] + 8 * MiB, peaks
    assert peaks[120 * MiB] < 64 * MiB, peaks
    assert len(s3_recordings.keys()) == 3


def test_every_attempt_at_one_entry_writes_the_same_object(s3_recordings, tmp_path):
    first = video_of(tmp_path, 1 * MiB, "first.mp4")
    second = video_of(tmp_path, 2 * MiB, "second.mp4")
    uploader = StorageUploader()
    one = uploader.upload(first, title="t", description="", key="entry-7")
    two = uploader.upload(second, title="t", description="", key="entry-7")
    other = uploader.upload(first, title="t", description="", key="entry-8")

    assert one.share_url == two.share_url != other.share_url
    assert sorted(s3_recordings.keys()) == sorted(
        recording_name(token_of(url)) for url in (one.share_url, other.share_url)
    )
    assert s3_recordings.read(recording_name(token_of(two.share_url))) == second.read_bytes()


def test_a_retry_after_a_crash_mid_upload_leaves_no_unfinished_upload(s3_recordings, tmp_path):
    # What a worker killed in the middle of a multipart upload leaves: an upload begun, a
    # part sent, never completed nor aborted (invisible in listings, billed by S3).
    key = recording_name(share_token("entry-crashed"))
    client, bucket = s3_recordings.client, s3_recordings.name
    begun = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType="video/mp4")
    client.upload_part(
        Bucket=bucket, Key=key, UploadId=begun["UploadId"], PartNumber=1, Body=b"x" * 5 * MiB
    )
    assert len(s3_recordings.unfinished_uploads()) == 1

    video = video_of(tmp_path, 9 * MiB)
    StorageUploader().upload(video, title="t", description="", key="entry-crashed")

    assert s3_recordings.unfinished_uploads() == []
    assert s3_recordings.keys() == [key]
    assert s3_recordings.read(key) == video.read_bytes()


def test_an_upload_that_fails_midway_leaves_nothing_and_is_retried(s3_recordings, tmp_path):
    # An earlier attempt stored the whole video, then its worker died before the entry
    # was marked completed; this attempt loses the network at its second part.
    video = video_of(tmp_path, 20 * MiB)
    uploader = StorageUploader()
    uploader.upload(video, title="t", description="", key="entry-9")
    storage = storages["recordings"]
    events = storage.connection.meta.client.meta.events
    parts = []

    def cut_the_network(params, **kwargs):
        parts.append(params.get("PartNumber"))
        if len(parts) == 2:
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    events.register("before-call.s3.UploadPart", cut_the_network)
    try:
        with pytest.raises(UploadError) as failed:
            uploader.upload(video, title="t", description="", key="entry-9")
    finally:
        events.unregister("before-call.s3.UploadPart", cut_the_network)

    assert failed.value.transient
    assert share_token("entry-9") not in failed.value.reason
    assert s3_recordings.unfinished_uploads() == []
    assert s3_recordings.keys() == []  # the earlier copy too: the retry writes it anew
    again = uploader.upload(video, title="t", description="", key="entry-9")
    assert s3_recordings.read(recording_name(token_of(again.share_url))) == video.read_bytes()


def test_a_missing_bucket_fails_the_entry_at_once_with_a_reason_for_people(
    settings, s3_server, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": s3_storage_entry(s3_server, "no-such-bucket-here"),
    }
    with pytest.raises(UploadError) as failed:
        StorageUploader().upload(video_of(tmp_path, 1000), title="t", description="", key="entry-x")
    assert not failed.value.transient
    assert "NoSuchBucket" in failed.value.reason
    assert "no-such-bucket-here" not in failed.value.reason


def test_progress_is_reported_while_the_upload_runs(s3_recordings, tmp_path, monkeypatch):
    monkeypatch.setattr(uploaders, "PROGRESS_SECONDS", 0.01)
    video = video_of(tmp_path, 40 * MiB)
    seen: list[tuple[int, int]] = []
    StorageUploader().upload(
        video,
        title="t",
        description="",
        key="entry-progress",
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert len(seen) >= 2
    assert all(total == 40 * MiB for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (40 * MiB, 40 * MiB)


class Cancelled(Exception):
    pass


def test_an_upload_stopped_by_its_caller_leaves_no_unfinished_upload(
    s3_recordings, tmp_path, monkeypatch
):
    monkeypatch.setattr(uploaders, "PROGRESS_SECONDS", 0.01)
    video = video_of(tmp_path, 64 * MiB)

    def cancel(done: int, total: int) -> None:
        raise Cancelled  # as Progress.report does once the entry was cancelled

    with pytest.raises(Cancelled):
        StorageUploader().upload(
            video, title="t", description="", key="entry-stop", on_progress=cancel
        )
    assert s3_recordings.unfinished_uploads() == []


# --- share links -----------------------------------------------------------------------------


def test_a_share_link_redirects_to_a_short_lived_signed_url_that_serves_ranges(
    s3_recordings, tmp_path, client
):
    video = video_of(tmp_path, 3 * MiB)
    data = video.read_bytes()
    token = token_of(
        StorageUploader().upload(video, title="t", description="", key="entry-s").share_url
    )

    response = client.get(f"/share/{token}")
    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    location = response["Location"]
    assert location.startswith(s3_recordings.server.endpoint_url)
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location

    with httpx.Client(timeout=10) as http:
        assert http.get(location).content == data
        for header, (start, end) in {
            "bytes=0-99": (0, 99),
            "bytes=1000000-": (1000000, len(data) - 1),
            "bytes=-500": (len(data) - 500, len(data) - 1),
        }.items():
            ranged = http.get(location, headers={"Range": header})
            assert ranged.status_code == 206, header
            assert ranged.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
            assert ranged.content == data[start : end + 1]

    head = client.head(f"/share/{token}")
    assert head.status_code == 302
    assert httpx.head(head["Location"], timeout=10).headers["Content-Length"] == str(len(data))


def test_unknown_tokens_are_404_without_a_signed_url(s3_recordings, client):
    response = client.get("/share/" + share_token("never-uploaded"))
    assert response.status_code == 404
    assert "Location" not in response
    assert client.get("/share/not-a-token").status_code == 404


def test_a_storage_that_does_not_answer_is_a_503(settings, client):
    from botocore.config import Config

    from devtools.processes import free_port
    from tests.storage.conftest import S3Server

    nobody = S3Server(f"http://127.0.0.1:{free_port()}", process=None)  # type: ignore[arg-type]
    entry = s3_storage_entry(nobody, "recordings")
    entry["OPTIONS"]["client_config"] = Config(
        connect_timeout=1, retries={"max_attempts": 0}, signature_version="s3v4"
    )
    settings.STORAGES = {**settings.STORAGES, "recordings": entry}
    response = client.get("/share/" + share_token("anything"))
    assert response.status_code == 503
    assert response["Retry-After"]


def test_pages_that_embed_the_video_learn_the_origin_to_allow(bucket, fs_recordings):
    from queue_app.integrations.recordings import media_origin

    s3 = storages.create_storage(s3_storage_entry(bucket.server, bucket.name))
    assert media_origin(s3) == bucket.server.endpoint_url
    assert media_origin() is None  # fs_recordings: served from this origin
