"""The development keys: files in VAR_DIR that scripts/stack.py makes and DEBUG mode reads.

With DEBUG on and SECRET_KEY / CREDENTIAL_ENCRYPTION_KEYS unset, every process using the
same VAR_DIR (daphne, the Celery workers, manage.py) reads the same keys from here, so
sessions and stored credentials survive restarts. Settings only read these files;
`make run` (or `scripts/stack.py keys`) writes them.
"""

from __future__ import annotations

from pathlib import Path

SECRET_KEY_FILE = "dev-secret-key"
CREDENTIAL_KEY_FILE = "dev-credential-key"
# What to tell someone whose VAR_DIR has no development keys yet.
HOW_TO_MAKE = "make it with `make run` or `.venv/bin/python scripts/stack.py keys`"


def read(var_dir: Path, name: str) -> str:
    """The key kept in var_dir/name, or "" when there is none (yet)."""
    try:
        return (var_dir / name).read_text().strip()
    except FileNotFoundError:
        return ""
