"""Start-up checks: the keys a process needs before it serves or runs anything.

fathomloom/apps.py runs them when Django starts (daphne, Celery, manage.py, pytest), so
every process refuses to start without them, whichever settings module it uses. With
DEBUG off SECRET_KEY is required; CREDENTIAL_ENCRYPTION_KEYS is required by whatever
stores or reads a credential (queue_app/crypto.py says so then). With DEBUG on both come
from the environment or from the development key files in VAR_DIR (devkeys.py).
"""

from __future__ import annotations

from pathlib import Path

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
