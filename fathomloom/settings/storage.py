"""STORAGES["recordings"] for RECORDINGS_STORAGE: the filesystem under MEDIA_ROOT, or an
S3-compatible bucket through django-storages (docs/uploaders.md)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

KINDS = ("filesystem", "s3")
# Uploads go in 8 MiB parts, 4 at a time, and at most 4 parts are read ahead: a recording
# of any size holds at most 32 MiB of a worker's memory.
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_MEMORY = 4


def recordings_storage(
    kind: str,
    *,
    bucket: str = "",
    endpoint_url: str | None = None,
    region_name: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    location: str = "",
    addressing_style: str | None = None,
    signature_version: str = "s3v4",
    querystring_expire: int = 3600,
) -> dict[str, Any]:
    """The STORAGES entry; ImproperlyConfigured naming the variable that is wrong."""
    if kind == "filesystem":
        # No location: it follows MEDIA_ROOT. A retried transfer rewrites its own file.
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"allow_overwrite": True},
        }
    if kind != "s3":
        raise ImproperlyConfigured(f"RECORDINGS_STORAGE must be filesystem or s3, got {kind!r}")
    if not bucket:
        raise ImproperlyConfigured("RECORDINGS_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
    from boto3.s3.transfer import TransferConfig  # only processes that use S3 load boto3

    transfer = TransferConfig(
        multipart_threshold=PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=PARTS_IN_MEMORY,
    )
    transfer.max_in_memory_upload_chunks = PARTS_IN_MEMORY  # s3transfer's, not in boto3's init
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "access_key": access_key,
            "secret_key": secret_key,
            "location": location,
            "addressing_style": addressing_style,
            "signature_version": signature_version,
            "querystring_expire": querystring_expire,
            # Private objects, reached only through signed URLs; one key per entry, rewritten
            # by a retry (queue_app/integrations/recordings.py).
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
            "transfer_config": transfer,
        },
    }
