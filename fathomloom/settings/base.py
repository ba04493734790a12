"""Settings common to every process, read from the environment with working defaults.

Every variable read here is listed in the README's configuration table. Importing this
module writes nothing: with DEBUG on and SECRET_KEY / CREDENTIAL_ENCRYPTION_KEYS unset it
reads the development keys that scripts/stack.py keeps in VAR_DIR (`make run` makes them),
and fathomloom/settings/checks.py refuses to start without the keys a process needs.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry as AsyncRedisRetry
from redis.backoff import ExponentialBackoff

from . import devkeys
from .env import env_bool, env_float, env_int, env_list, env_str
from .storage import recordings_storage

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Runtime files (SQLite database, development keys, media, logs) live here, never in git.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

# Required with DEBUG off (fathomloom/settings/checks.py); with DEBUG on and unset, the
# development key shared by daphne, the workers and restarts (so sessions survive).
SECRET_KEY = env_str("SECRET_KEY") or (
    devkeys.read(VAR_DIR, devkeys.SECRET_KEY_FILE) if DEBUG else ""
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "queue_app",
    "realtime",
    # Start-up checks (the keys a process needs) and VAR_DIR: fathomloom/apps.py.
    "fathomloom",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The Content-Security-Policy header on every answer (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    # Every answer under /api/ is JSON, DEBUG pages included (queue_app/api/errors.py).
    "queue_app.api.errors.JsonErrorsMiddleware",
    # daphne serves no static files itself: WhiteNoise serves the pages' CSS and JS (and the
    # admin's) from the same process, with DEBUG off too (as in the browser tests).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fathomloom.urls"
ASGI_APPLICATION = "fathomloom.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # VAR_DIR itself is made at start-up (fathomloom/apps.py), not here.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes SQLite's write lock when a transaction starts, so the queue's
        # read-then-write transactions serialise instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        # WAL lets daphne read while a worker writes.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Under daphne each request's sync code runs in a thread of its own (asgiref's
    # ThreadSensitiveContext), and Django's connections are per thread: without a pool
    # every request connected afresh, a new server process each time (half of a POST
    # /api/queue's 32-41 ms: bench/notes.md, "A connection per request"). psycopg's pool
    # keeps the server sessions between requests. On where asgi.py turns it on
    # (DATABASE_POOL): elsewhere a process keeps its one persistent connection
    # (CONN_MAX_AGE), and Celery's prefork children would close a pool at every task.
    if env_bool("DATABASE_POOL", False):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses both at once
        # A session the server dropped (a restart) is replaced before a request gets it.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        # Added to the URL's own options (sslmode=..., say), not in their place.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
            "timeout": 10,
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Fathom ---------------------------------------------------------------------------------
FATHOM_API_BASE_URL = env_str("FATHOM_API_BASE_URL", "https://api.fathom.ai/external/v1")


# --- Stored credentials ---------------------------------------------------------------------
def _credential_keys() -> list[str]:
    keys = env_list("CREDENTIAL_ENCRYPTION_KEYS")
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            # The key is a secret: say which one is wrong, never what it is.
            raise ImproperlyConfigured(
                f"CREDENTIAL_ENCRYPTION_KEYS: key {number} is not a Fernet key (32 url-safe "
                "base64-encoded bytes; see docs/credentials.md to make one)."
            ) from None
    if not keys and DEBUG:
        dev_key = devkeys.read(VAR_DIR, devkeys.CREDENTIAL_KEY_FILE)
        keys = [dev_key] if dev_key else []
    return keys


# Fernet keys, comma-separated: the first encrypts, every one decrypts (rotation: put a new
# key first, run `manage.py rotate_credential_keys`, then drop the old one). Unset with
# DEBUG off, storing or reading a credential fails with ImproperlyConfigured.
CREDENTIAL_ENCRYPTION_KEYS = _credential_keys()

# --- Redis, Channels, Celery ----------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# Shared by every process, so that API throttles count across all daphne processes.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "fathomloom-cache"),
    }
}

# The live queue reaches sockets through one hub per daphne process (realtime/hub.py): a
# queue event is one group_send to a group with one member per process, so the layer
# carries a handful of messages per event, not one per socket. CHANNEL_LAYER_BACKEND
# picks "core" (the default) or "pubsub"; docs/benchmarks.md compares them.
CHANNEL_LAYER_BACKEND = env_str("CHANNEL_LAYER_BACKEND", "core")


def _redis_urls(name: str, default: list[str]) -> list[str]:
    urls = env_list(name, default)
    for number, url in enumerate(urls, start=1):
        if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
            # Which item, never its text: a URL may hold a password.
            raise ImproperlyConfigured(
                f"{name}: item {number} is not a redis://, rediss:// or unix:// URL"
            )
    return urls


# The layer's Redis hosts, comma-separated (default: REDIS_URL alone). channels_redis shards
# over them by a hash of each channel and group name: every process must list the same
# URLs in the same order (docs/deployment.md; Sentinel there too).
CHANNEL_LAYER_REDIS_URLS = _redis_urls("CHANNEL_LAYER_REDIS_URLS", [REDIS_URL])
if CHANNEL_LAYER_BACKEND == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": url} for url in CHANNEL_LAYER_REDIS_URLS],
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "fathomloom"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": url,
                        # redis-py 8 times out reads after 5 s, racing the layer's own 5 s
                        # blocking read and closing idle sockets (channels_redis#422).
                        "socket_timeout": None,
                        # redis-py 8 raises instead of waiting past 100 pooled connections.
                        "max_connections": 1000,
                        # The pool outlives a Redis restart, its connections do not: without
                        # a retry each dead one fails a command (a lost publish, a /readyz
                        # that stays down) before it reconnects.
                        "retry": AsyncRedisRetry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                    }
                    for url in CHANNEL_LAYER_REDIS_URLS
                ],
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "fathomloom"),
                "capacity": 1000,
                "expiry": 60,
                # A hub renews its groups every minute (realtime.hub); one whose process
                # died leaves them within 5 minutes instead of channels_redis' default day,
                # in which every publish also went to its channel, full and unread.
                "group_expiry": 300,
            },
        }
    }

# Redis (the default) or RabbitMQ (amqp://user:password@host:5672/vhost); docs/deployment.md
# ("Celery brokers") says what differs between them.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A broker blip must not cost running transfers an attempt and a lease period. They need
# no broker to finish (the database lease is the truth), so they carry on. Their message
# cannot be acknowledged on the lost connection and may come again later: the transfer
# task then finds its entry not claimable (transfers.transfer_begin) and skips
# (tests/faults/test_redelivery.py, test_fault_suite.py's Redis restart).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Redis: time limits stay well below the visibility timeout, so a task is never redelivered
# while its first run is still allowed to go on. RabbitMQ has no visibility timeout (it
# redelivers when the worker's connection closes) but a consumer_timeout instead, which its
# own configuration must raise above the hard time limit (docs/deployment.md).
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {}
    if urlsplit(CELERY_BROKER_URL).scheme in {"amqp", "amqps", "pyamqp"}
    else {"visibility_timeout": 2 * 3600}
)
CELERY_TASK_SOFT_TIME_LIMIT = 3600
CELERY_TASK_TIME_LIMIT = 3600 + 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Several deployments (or test runs) on one broker (a RabbitMQ vhost, a Redis database): a
# prefix for the task queue's and the control and event exchanges' names, so that none
# takes, inspects or purges another's tasks. Unset: Celery's own names.
_celery_name_prefix = env_str("CELERY_NAME_PREFIX")
if _celery_name_prefix:
    CELERY_TASK_DEFAULT_QUEUE = f"{_celery_name_prefix}celery"
    CELERY_CONTROL_EXCHANGE = f"{_celery_name_prefix}celery"
    CELERY_EVENT_EXCHANGE = f"{_celery_name_prefix}celeryev"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- The queue ------------------------------------------------------------------------------
# How many transfers run at once across the whole fleet.
QUEUE_CONCURRENCY = env_int("QUEUE_CONCURRENCY", 2)
# A running entry whose lease runs out (its worker stopped heartbeating) goes back to the line.
QUEUE_LEASE_SECONDS = env_int("QUEUE_LEASE_SECONDS", 300)
QUEUE_MAX_ATTEMPTS = env_int("QUEUE_MAX_ATTEMPTS", 5)
# Events older than this are pruned; a client resuming from before it gets a fresh snapshot.
QUEUE_EVENT_RETENTION_HOURS = env_int("QUEUE_EVENT_RETENTION_HOURS", 24 * 7)
# Celery beat: how often the dispatcher runs anyway, and the lease reaper looks for entries
# whose worker died.
QUEUE_DISPATCH_TICK_SECONDS = env_float("QUEUE_DISPATCH_TICK_SECONDS", 10.0)
QUEUE_REAPER_SECONDS = env_float("QUEUE_REAPER_SECONDS", 30.0)
# Transient failures wait base * 2**(attempt-1) seconds, with jitter, at most the maximum.
QUEUE_RETRY_BASE_SECONDS = env_float("QUEUE_RETRY_BASE_SECONDS", 5.0)
QUEUE_RETRY_MAX_SECONDS = env_float("QUEUE_RETRY_MAX_SECONDS", 600.0)
# A running transfer renews its lease this often (well inside QUEUE_LEASE_SECONDS).
QUEUE_HEARTBEAT_SECONDS = env_float("QUEUE_HEARTBEAT_SECONDS", 10.0)
# Fathom's limits per API key, shared by every worker through Redis token buckets.
FATHOM_API_CALLS_PER_MINUTE = env_int("FATHOM_API_CALLS_PER_MINUTE", 60)
FATHOM_DOWNLOADS_PER_MINUTE = env_int("FATHOM_DOWNLOADS_PER_MINUTE", 30)
# How often a worker asks Fathom whether a requested download is ready.
FATHOM_POLL_INTERVAL_SECONDS = env_float("FATHOM_POLL_INTERVAL_SECONDS", 2.0)
# Ask the dispatcher for work after each change that frees a slot or adds an entry; the beat
# tick dispatches as well, so turning this off only slows the start of a transfer.
QUEUE_DISPATCH_ON_COMMIT = env_bool("QUEUE_DISPATCH_ON_COMMIT", True)
# The line's order: "fair" goes round by owner (each user's k-th waiting entry ahead of
# every user's (k+1)-th), "fifo" is first come, first served (docs/architecture.md).
QUEUE_ORDERING = env_str("QUEUE_ORDERING", "fair")
if QUEUE_ORDERING not in ("fair", "fifo"):
    raise ImproperlyConfigured(f"QUEUE_ORDERING must be fair or fifo, not {QUEUE_ORDERING!r}.")

# PostgreSQL's synchronous_commit for the queue's changes (each SET LOCAL in its
# transaction, services.changes.lock_queue). "off", the default: a change's COMMIT does not
# wait for the WAL's flush, so the queue lock is held for the statements only; a crash of
# PostgreSQL (not a restart, which flushes) can lose the last ~3 x wal_writer_delay of
# changes, never half of one (docs/deployment.md, "Asynchronous commit"). "on" leaves the
# server's setting; "local", "remote_write", "remote_apply" are PostgreSQL's own levels.
QUEUE_SYNCHRONOUS_COMMIT = env_str("QUEUE_SYNCHRONOUS_COMMIT", "off").strip().lower()
if QUEUE_SYNCHRONOUS_COMMIT not in ("off", "on", "local", "remote_write", "remote_apply"):
    raise ImproperlyConfigured(
        "QUEUE_SYNCHRONOUS_COMMIT must be off, on, local, remote_write or remote_apply,"
        f" not {QUEUE_SYNCHRONOUS_COMMIT!r}."
    )
# On PostgreSQL the statements the queue runs under its lock are prepared once per
# connection and executed by name (queue_app.sql). Turn off behind a pooler that shares
# server sessions between clients (PgBouncer in transaction mode).
QUEUE_PREPARED_STATEMENTS = env_bool("QUEUE_PREPARED_STATEMENTS", True)

# --- Uploading ------------------------------------------------------------------------------
# The backend that receives each video (docs/uploaders.md); the default keeps it in the
# recordings storage (RECORDINGS_STORAGE below) and serves it at /share/<token>.
UPLOADER_BACKEND = env_str("UPLOADER_BACKEND", "queue_app.integrations.uploaders.StorageUploader")
# How this service is reached from outside, for share links (no trailing slash).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")


def _reachable_from_outside(url: str) -> bool:
    """Whether `url`'s host is a public name (dotted, not loopback or a private address)."""
    import ipaddress

    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return "." in host and host != "localhost" and not host.endswith(".localhost")


# --- Fathom pushing to us (docs/credentials.md) ---------------------------------------------
# Connecting a Fathom key registers its webhook (POST /webhooks) at PUBLIC_BASE_URL.
FATHOM_WEBHOOK_REGISTRATION = env_bool("FATHOM_WEBHOOK_REGISTRATION", True)
# A download asks Fathom to POST the finished file to us (destination_url) rather than
# being polled; by default only when PUBLIC_BASE_URL is a name Fathom can reach.
FATHOM_DOWNLOAD_CALLBACKS = env_bool(
    "FATHOM_DOWNLOAD_CALLBACKS", _reachable_from_outside(PUBLIC_BASE_URL)
)
# How long a transfer waits for that callback before polling after all.
FATHOM_CALLBACK_WAIT_SECONDS = env_float("FATHOM_CALLBACK_WAIT_SECONDS", 300.0)

# --- Email ----------------------------------------------------------------------------------
# A failed transfer emails its owner. The console backend prints mail to the worker's log.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "fathomloom <noreply@localhost>")


# --- Security: HTTPS, headers, Content-Security-Policy --------------------------------------
# docs/operations.md ("Production settings") lists what each variable turns on;
# tests/test_deploy_settings.py runs `manage.py check --deploy` with them.
def _proxy_ssl_header() -> tuple[str, str] | None:
    """TRUSTED_PROXY_SSL_HEADER as Django's SECURE_PROXY_SSL_HEADER: `Name` (the request came
    over HTTPS when the proxy sets it to `https`) or `Name: value`."""
    raw = env_str("TRUSTED_PROXY_SSL_HEADER").strip()
    if not raw:
        return None
    name, colon, value = (part.strip() for part in raw.partition(":"))
    if not re.fullmatch(r"[A-Za-z0-9-]+", name) or (colon and not value):
        raise ImproperlyConfigured(
            "TRUSTED_PROXY_SSL_HEADER must be a header name, optionally with the value that "
            f"means HTTPS (X-Forwarded-Proto, or X-Forwarded-Ssl: on), got {raw!r}"
        )
    return "HTTP_" + name.upper().replace("-", "_"), value or "https"


# Set only behind a proxy that terminates TLS and always sets (or strips) this header:
# Django then believes it, so a client reaching daphne directly could claim HTTPS.
SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()
# The service is reached over HTTPS only: on by default behind such a proxy.
SECURE_SSL = env_bool("SECURE_SSL", SECURE_PROXY_SSL_HEADER is not None)
SECURE_SSL_REDIRECT = SECURE_SSL
# Probes come straight from a load balancer or orchestrator, over plain HTTP: never
# redirected (paths without their leading slash).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
# HSTS is sent on HTTPS answers only. A year, subdomains included, preload allowed (the
# preload list still needs a manual submission); each can be turned down by its variable.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SECURE_SSL else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Django's defaults, stated because the deploy checks and the CSP below rely on them.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"


def _websocket_origins(base_url: str) -> list[str]:
    """The ws/wss origin of PUBLIC_BASE_URL, where the pages open /queue_updates."""
    parts = urlsplit(base_url)
    if not parts.netloc:
        return []
    return [f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"]


# No inline script or style on any page: the pages load their JS and CSS from static files
# and pass data in JSON blocks (json_script), which CSP does not run. The one inline script
# and style, Swagger UI's at /api/docs/ (templates/drf_spectacular/swagger_ui.html), carry
# the per-answer nonce, which appears in the header only on answers that use it.
# connect-src: CSP3 browsers match ws/wss of the page's own host with 'self'; the origin of
# PUBLIC_BASE_URL is named too, for browsers that predate that rule.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF, *_websocket_origins(PUBLIC_BASE_URL)],
        "frame-ancestors": [NONE],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    }
}

# --- Auth, API ------------------------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
# Prometheus scrapes GET /metrics with `Authorization: Bearer <METRICS_TOKEN>` (or as staff).
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Staff land on the monitor, users on their meetings (queue_app.views.landing).
LOGIN_REDIRECT_URL = "landing"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK = {
    # Token first: DRF answers 401 (not 403) only when the first authenticator names a
    # WWW-Authenticate scheme, which session authentication does not.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "EXCEPTION_HANDLER": "queue_app.api.errors.exception_handler",
    # DRF's three, with a JSON parser that refuses deep nesting and non-UTF-8 bodies with a
    # 400 instead of a RecursionError's 500 (queue_app/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "queue_app.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Behind a proxy, set NUM_PROXIES so throttles see the client's address, not the proxy's.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0) or None,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# OpenAPI 3.1: its schemas are JSON Schema 2020-12, so the API documents entries and events
# with the WebSocket's own schema (queue_app.events) as it is.
SPECTACULAR_SETTINGS = {"TITLE": "fathomloom API", "VERSION": "0.1.0", "OAS_VERSION": "3.1.0"}

# --- Static, media, i18n --------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise finds files in the apps' static/ folders itself (read once at start-up), so no
# collectstatic step is needed to run; after a collectstatic, STATIC_ROOT is served as well.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Recordings -----------------------------------------------------------------------------
# Where the default uploader keeps videos and share links read them (docs/uploaders.md):
# "filesystem", under MEDIA_ROOT (one machine, or a volume every machine mounts), or "s3",
# any S3-compatible object storage (AWS S3, MinIO, Cloudflare R2) through django-storages,
# configured by its own AWS_* settings (fathomloom/settings/storage.py).
RECORDINGS_STORAGE = env_str("RECORDINGS_STORAGE", "filesystem").strip().lower()
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL") or None  # unset: AWS itself
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME") or None
# Unset: boto3's own chain (AWS_* in the environment, a profile, an instance role).
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID") or None
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY") or None
AWS_LOCATION = env_str("AWS_LOCATION")  # a key prefix inside the bucket
AWS_S3_ADDRESSING_STYLE = env_str("AWS_S3_ADDRESSING_STYLE") or None  # "path" for MinIO
# Signature V4: the only one R2 and the newer AWS regions accept.
AWS_S3_SIGNATURE_VERSION = env_str("AWS_S3_SIGNATURE_VERSION", "s3v4")
# A share link redirects to a signed URL of the object that is good for this long.
AWS_QUERYSTRING_EXPIRE = env_int("AWS_QUERYSTRING_EXPIRE", 3600)

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "recordings": recordings_storage(
        RECORDINGS_STORAGE,
        bucket=AWS_STORAGE_BUCKET_NAME,
        endpoint_url=AWS_S3_ENDPOINT_URL,
        region_name=AWS_S3_REGION_NAME,
        access_key=AWS_ACCESS_KEY_ID,
        secret_key=AWS_SECRET_ACCESS_KEY,
        location=AWS_LOCATION,
        addressing_style=AWS_S3_ADDRESSING_STYLE,
        signature_version=AWS_S3_SIGNATURE_VERSION,
        querystring_expire=AWS_QUERYSTRING_EXPIRE,
    ),
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        # httpx logs every request's URL at INFO, and Fathom's signed video URLs carry a
        # token: a short-lived credential that has no place in logs.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Live updates ---------------------------------------------------------------------------
# Let anonymous sockets watch the line, every entry redacted. Off: they are closed (4401).
REALTIME_PUBLIC_FEED = env_bool("REALTIME_PUBLIC_FEED", False)
# A socket with more unsent bytes than this is too slow: closed with 4008, it resumes later.
# It bounds what one client that stops reading holds in server memory.
REALTIME_MAX_BACKLOG_BYTES = env_int("REALTIME_MAX_BACKLOG_BYTES", 1024 * 1024)
# The kernel's send buffer per socket, in bytes; 0 leaves it to the kernel's autotuning
# (up to net.ipv4.tcp_wmem's maximum, 4 MB here). Setting it bounds kernel memory too.
REALTIME_SOCKET_SNDBUF = env_int("REALTIME_SOCKET_SNDBUF", 0)
