"""The fathomloom app: start-up work that belongs to no other app.

Settings modules only read; what a process must check or make before it starts happens
here, once Django has loaded the settings (daphne, Celery, manage.py and pytest alike).
"""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from fathomloom.settings.checks import check_required_keys


class FathomloomConfig(AppConfig):
    name = "fathomloom"

    def ready(self) -> None:
        try:
            secret_key = settings.SECRET_KEY
        except ImproperlyConfigured:  # Django's own refusal of an empty SECRET_KEY
            secret_key = ""
        check_required_keys(
            debug=settings.DEBUG,
            secret_key=secret_key,
            credential_keys=settings.CREDENTIAL_ENCRYPTION_KEYS,
            var_dir=settings.VAR_DIR,
        )
        if any(db["ENGINE"] == "django.db.backends.sqlite3" for db in settings.DATABASES.values()):
            # SQLite's files (and the tests' database) live in VAR_DIR; SQLite makes no folder.
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
