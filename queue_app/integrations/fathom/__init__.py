"""Fathom's public API as the workers use it, in four modules:

- ``errors``: ``FathomError`` and its kinds (imports nothing else of the package);
- ``parsing``: Fathom's JSON as our types (``FathomMeeting``, ``DownloadStatus``);
- ``ratelimit``: the Redis token buckets every process shares per API key;
- ``client``: ``FathomClient``, the HTTP calls, built on the three above.

The names below are re-exported so ``from queue_app.integrations.fathom import X`` works.
The modules import each other directly (never this package ``__init__``), so importing one
of them never runs this file's imports and there is no circle through it.
"""

from queue_app.integrations.fathom.client import (
    DEFAULT_BASE_URL,
    CreatedWebhook,
    DownloadedFile,
    FathomClient,
)
from queue_app.integrations.fathom.errors import (
    FathomDownloadExpired,
    FathomDownloadFailed,
    FathomDownloadIncomplete,
    FathomError,
    FathomMalformedResponse,
    FathomNoAccess,
    FathomNoMedia,
    FathomRateLimited,
    FathomRejected,
    FathomUnavailable,
)
from queue_app.integrations.fathom.parsing import (
    DOWNLOAD_STATUSES,
    DownloadFile,
    DownloadStatus,
    FathomMeeting,
    parse_download_status,
    parse_meeting,
    parse_meetings_page,
)
from queue_app.integrations.fathom.ratelimit import (
    DEFAULT_LIMITS,
    Limit,
    RateLimiter,
    key_fingerprint,
    limits_per_minute,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DOWNLOAD_STATUSES",
    "CreatedWebhook",
    "DownloadFile",
    "DownloadStatus",
    "DownloadedFile",
    "FathomClient",
    "FathomDownloadExpired",
    "FathomDownloadFailed",
    "FathomDownloadIncomplete",
    "FathomError",
    "FathomMalformedResponse",
    "FathomMeeting",
    "FathomNoAccess",
    "FathomNoMedia",
    "FathomRateLimited",
    "FathomRejected",
    "FathomUnavailable",
    "Limit",
    "RateLimiter",
    "key_fingerprint",
    "limits_per_minute",
    "parse_download_status",
    "parse_meeting",
    "parse_meetings_page",
]
