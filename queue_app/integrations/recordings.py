"""Where recordings are kept: the `recordings` storage (settings.STORAGES), each
recording's name in it, and what the storage API leaves to S3 itself.

A recording is `shares/<token>.mp4`. The token of a transfer is derived from its queue
entry with the SECRET_KEY, so every attempt at one entry writes the same object (a retry
overwrites what a crashed attempt left, never a second copy) while nobody without the
key can work a link out from an entry's id.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.core.files.storage import Storage, storages
from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)

SHARE_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
STORAGE_ALIAS = "recordings"
TOKEN_SALT = "fathomloom.recordings.share-token"


def recordings_storage() -> Storage:
    return storages[STORAGE_ALIAS]


def share_token(key: str | None = None) -> str:
    """The share token of a recording: derived from `key` (the same for every attempt at
    one entry), or random without one. 43 url-safe characters either way."""
    if key is None:
        return secrets.token_urlsafe(32)
    digest = salted_hmac(TOKEN_SALT, key, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def recording_name(token: str) -> str | None:
    """The recording's name in the storage, or None for a malformed token."""
    if not SHARE_TOKEN_PATTERN.match(token):
        return None
    return f"shares/{token}.mp4"


def local_path(storage: Storage, name: str) -> Path | None:
    """The file on this machine's disk, or None for a storage that has none (S3)."""
    try:
        return Path(storage.path(name))
    except NotImplementedError:  # Django's way for storages that open() cannot reach
        return None


def media_origin(storage: Storage | None = None) -> str | None:
    """The origin (scheme://host[:port]) that share links redirect players to, for a page
    that embeds the video: its Content-Security-Policy must allow it in `media-src`. None
    when recordings are served from this origin (the filesystem)."""
    storage = storage or recordings_storage()
    probe = "shares/origin.mp4"
    if local_path(storage, probe) is not None:
        return None
    url = urlsplit(storage.url(probe))  # S3 signs locally: no request is made
    return f"{url.scheme}://{url.netloc}"


def abort_unfinished_uploads(storage: Storage, name: str) -> int:
    """Abort the multipart uploads of `name` that a worker killed mid-upload left behind:
    S3 keeps their parts (and bills them) until they are completed or aborted, and no
    listing of objects shows them. How many there were; 0 for storages other than S3."""
    from storages.backends.s3 import S3Storage

    if not isinstance(storage, S3Storage):
        return 0
    client = storage.connection.meta.client
    key = storage._normalize_name(name)  # the key with AWS_LOCATION, as _save writes it
    aborted = 0
    paginator = client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=storage.bucket_name, Prefix=key):
        for upload in page.get("Uploads", ()):
            if upload["Key"] != key:
                continue  # a longer key that shares the prefix
            client.abort_multipart_upload(
                Bucket=storage.bucket_name, Key=key, UploadId=upload["UploadId"]
            )
            aborted += 1
    if aborted:
        logger.info("aborted %d unfinished upload(s) of a recording", aborted)
    return aborted
