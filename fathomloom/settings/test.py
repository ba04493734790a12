"""Settings for the tests: base, plus what only tests want.

pytest uses them (pyproject.toml), and so do the daphne, Celery and bench processes the
tests start (tests/processes.py passes DJANGO_SETTINGS_MODULE on), so that every process
of a test run signs and encrypts with the same keys without any file.
"""

from __future__ import annotations

import base64

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR
from .env import env_list, env_str

# Fixed keys when the environment gives none: not secrets, the same in every process.
SECRET_KEY = env_str("SECRET_KEY") or "insecure-test-only-key"
if not env_list("CREDENTIAL_ENCRYPTION_KEYS"):
    CREDENTIAL_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(b"fathomloom-test-credential-key!!").decode()
    ]

# The default hasher spends about half a second a user on purpose; tests make hundreds.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that the daphne and Celery processes started by the
    # integration tests see the same test database.
    DATABASES = {
        **DATABASES,
        "default": {**DATABASES["default"], "TEST": {"NAME": str(VAR_DIR / "test-db.sqlite3")}},
    }
