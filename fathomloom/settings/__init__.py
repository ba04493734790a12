"""The settings that DJANGO_SETTINGS_MODULE=fathomloom.settings names (manage.py, daphne,
Celery, production): base, as it is.

The package:
    env.py      typed readers of environment variables
    devkeys.py  the development key files in VAR_DIR (made by scripts/stack.py, read here)
    base.py     every setting, from the environment; importing it writes nothing
    test.py     base plus what only tests want (pytest's DJANGO_SETTINGS_MODULE)
    checks.py   the start-up checks (SECRET_KEY, the development keys), run by
                fathomloom/apps.py in every process
"""

from .base import *  # noqa: F403
