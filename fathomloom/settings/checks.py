"""Start-up checks: the keys a process needs before it serves or runs anything.

fathomloom/apps.py runs them when Django starts (daphne, Celery, manage.py, pytest), so
every process refuses to start without them, whichever settings module it uses. With
DEBUG off SECRET_KEY is required; CREDENTIAL_ENCRYPTION_KEYS is required by whatever
stores or reads a credential (queue_app/crypto.py says so then). With DEBUG on both come
from the environment or from the development key files in VAR_DIR (devkeys.py).

Also one of Django's system checks, run by `manage.py check --deploy`: the production
settings agree with each other (docs/operations.md, "Production settings").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import devkeys


def check_required_keys(
    *, debug: bool, secret_key: str, credential_keys: list[str], var_dir: Path
) -> None:
    """Raise ImproperlyConfigured, naming what is missing and how to set it."""
    if not secret_key:
        if not debug:
            raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
        raise ImproperlyConfigured(_no_dev_key("SECRET_KEY", var_dir / devkeys.SECRET_KEY_FILE))
    if debug and not credential_keys:
        raise ImproperlyConfigured(
            _no_dev_key("CREDENTIAL_ENCRYPTION_KEYS", var_dir / devkeys.CREDENTIAL_KEY_FILE)
        )


def _no_dev_key(setting: str, path: Path) -> str:
    return (
        f"{setting} is not set and {path} holds no development key: "
        f"{devkeys.HOW_TO_MAKE}, or set {setting}."
    )


@checks.register(checks.Tags.security, deploy=True)
def check_https_settings_agree(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """With HTTPS on, share links and the CSP's WebSocket origin (both from PUBLIC_BASE_URL)
    must be https too: an http:// link would bounce through the redirect, and name an
    origin the pages never use."""
    if settings.SECURE_SSL and settings.PUBLIC_BASE_URL.startswith("http://"):
        return [
            checks.Warning(
                f"PUBLIC_BASE_URL is {settings.PUBLIC_BASE_URL!r} while SECURE_SSL is on.",
                hint="Set PUBLIC_BASE_URL to the https:// address users reach this service at.",
                id="fathomloom.W001",
            )
        ]
    return []
