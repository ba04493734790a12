"""Which storage recordings go to (RECORDINGS_STORAGE), the filesystem default's orphan
rule, and backends written to the first uploader interface."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from queue_app.integrations.recordings import recording_name, share_token
from queue_app.integrations.uploaders import (
    StorageUploader,
    UploadError,
    UploadResult,
    upload_recording,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def recordings_setting(**env: str) -> tuple[int, str]:
    """(exit status, STORAGES["recordings"] as JSON or the error) in a new process."""
    code = (
        "import json\n"
        "from django.conf import settings\n"
        "from django.core.files.storage import storages\n"
        "entry = settings.STORAGES['recordings']\n"
        "storage = storages['recordings']\n"
        "options = {k: v for k, v in entry.get('OPTIONS', {}).items() if k != 'transfer_config'}\n"
        "transfer = entry.get('OPTIONS', {}).get('transfer_config')\n"
        "print(json.dumps({'backend': entry['BACKEND'], 'options': options,\n"
        "    'class': type(storage).__name__,\n"
        "    'bucket': getattr(storage, 'bucket_name', None),\n"
        "    'parts_in_memory': getattr(transfer, 'max_in_memory_upload_chunks', None),\n"
        "    'location': str(getattr(storage, 'location', ''))}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RECORDINGS_"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "fathomloom.settings.test", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout if result.returncode == 0 else result.stderr


def test_by_default_recordings_stay_on_the_filesystem_under_media_root(tmp_path):
    status, out = recordings_setting(MEDIA_ROOT=str(tmp_path / "m"))
    assert status == 0, out
    chosen = json.loads(out)
    assert chosen["class"] == "FileSystemStorage"
    assert chosen["location"] == str(tmp_path / "m")
    assert chosen["options"] == {"allow_overwrite": True}


def test_s3_is_configured_by_the_aws_variables():
    status, out = recordings_setting(
        RECORDINGS_STORAGE="S3",
        AWS_STORAGE_BUCKET_NAME="videos",
        AWS_S3_ENDPOINT_URL="https://minio.internal:9000",
        AWS_S3_REGION_NAME="eu-west-1",
        AWS_ACCESS_KEY_ID="id",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_S3_ADDRESSING_STYLE="path",
        AWS_LOCATION="fathomloom",
        AWS_QUERYSTRING_EXPIRE="600",
    )
    assert status == 0, out
    chosen = json.loads(out)
    assert (chosen["class"], chosen["bucket"]) == ("S3Storage", "videos")
    options = chosen["options"]
    assert options["endpoint_url"] == "https://minio.internal:9000"
    assert options["region_name"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"]) == ("id", "secret")
    assert options["addressing_style"] == "path"
    assert options["location"] == "fathomloom"
    assert options["querystring_expire"] == 600
    assert options["signature_version"] == "s3v4"
    # Private objects behind signed URLs, one per entry, rewritten by a retry.
    assert options["querystring_auth"] is True and options["default_acl"] is None
    assert options["file_overwrite"] is True
    assert chosen["parts_in_memory"] == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECORDINGS_STORAGE": "s3"}, "RECORDINGS_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME"),
        ({"RECORDINGS_STORAGE": "gcs"}, "RECORDINGS_STORAGE must be filesystem or s3"),
    ],
)
def test_a_wrong_storage_setting_stops_the_process_naming_it(env, message):
    status, out = recordings_setting(**env)
    assert status != 0
    assert "ImproperlyConfigured" in out and message in out


# --- the filesystem ------------------------------------------------------------------------


def test_every_attempt_at_one_entry_writes_the_same_file(fs_recordings, tmp_path, client):
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(os.urandom(100_000))
    second.write_bytes(os.urandom(150_000))
    one = StorageUploader().upload(first, title="t", description="", key="entry-1")
    two = StorageUploader().upload(second, title="t", description="", key="entry-1")
    assert one.share_url == two.share_url
    token = one.share_url.rsplit("/", 1)[1]
    assert token == share_token("entry-1") != share_token("entry-2")
    assert sorted(p.name for p in (fs_recordings / "shares").iterdir()) == [f"{token}.mp4"]
    response = client.get(f"/share/{token}")
    assert b"".join(response.streaming_content) == second.read_bytes()


@pytest.fixture
def file_size_limit():
    """Writes past `limit` bytes fail with EFBIG, as on a full disk (SIGXFSZ ignored)."""
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    previous = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, previous[1]))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, previous)
    signal.signal(signal.SIGXFSZ, previous_handler)


def test_a_write_that_fails_midway_leaves_no_partial_file(fs_recordings, tmp_path, file_size_limit):
    video = tmp_path / "in.mp4"
    video.write_bytes(os.urandom(2_000_000))
    (fs_recordings / "shares").mkdir(parents=True)
    file_size_limit(1_000_000)
    try:
        with pytest.raises(UploadError) as failed:
            StorageUploader().upload(video, title="t", description="", key="entry-3")
    finally:
        file_size_limit(resource.RLIM_INFINITY)
    assert failed.value.transient
    assert "File too large" in failed.value.reason
    assert list((fs_recordings / "shares").iterdir()) == []
    # The retry stores it whole.
    result = StorageUploader().upload(video, title="t", description="", key="entry-3")
    stored = fs_recordings / recording_name(result.share_url.rsplit("/", 1)[1])
    assert stored.read_bytes() == video.read_bytes()


# --- other destinations ----------------------------------------------------------------------


class FirstInterfaceUploader:
    """A backend written before `key` and `on_progress` existed."""

    calls: list[dict] = []

    def upload(self, path: Path, *, title: str, description: str) -> UploadResult:
        FirstInterfaceUploader.calls.append({"path": path, "title": title})
        return UploadResult(share_url="https://loom.example.com/v/1", backend="example")


def test_backends_of_the_first_interface_keep_working(settings, tmp_path):
    settings.UPLOADER_BACKEND = f"{__name__}.FirstInterfaceUploader"
    video = tmp_path / "in.mp4"
    video.write_bytes(b"video")
    result = upload_recording(
        video, title="Weekly", description="", key="entry-1", on_progress=lambda d, t: None
    )
    assert result.share_url == "https://loom.example.com/v/1"
    assert FirstInterfaceUploader.calls == [{"path": video, "title": "Weekly"}]


def test_a_storage_that_renames_instead_of_overwriting_is_refused(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    video = tmp_path / "in.mp4"
    video.write_bytes(b"v" * 1000)
    StorageUploader().upload(video, title="t", description="", key="entry-r")
    with pytest.raises(UploadError) as failed:
        StorageUploader().upload(video, title="t", description="", key="entry-r")
    assert not failed.value.transient
    # The copy under another name is gone; the one the link names stays.
    assert [p.name for p in (tmp_path / "media" / "shares").iterdir()] == [
        f"{share_token('entry-r')}.mp4"
    ]
