"""The settings package: environment parsing, the start-up checks, the test settings, and
that importing the settings writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from fathomloom.settings.checks import check_required_keys
from fathomloom.settings.env import env_bool, env_float, env_int, env_list, env_str

ROOT = Path(__file__).resolve().parents[1]


def test_env_readers_parse_and_fall_back_to_defaults(monkeypatch):
    monkeypatch.setenv("FL_TEST_BOOL", " Yes ")
    monkeypatch.setenv("FL_TEST_INT", "42")
    monkeypatch.setenv("FL_TEST_FLOAT", "0.5")
    monkeypatch.setenv("FL_TEST_LIST", " a, ,b ,")
    monkeypatch.setenv("FL_TEST_EMPTY", "")
    assert env_bool("FL_TEST_BOOL") is True
    assert env_int("FL_TEST_INT", 1) == 42
    assert env_float("FL_TEST_FLOAT", 1.0) == 0.5
    assert env_list("FL_TEST_LIST") == ["a", "b"]
    assert env_bool("FL_TEST_EMPTY", True) is True
    assert env_int("FL_TEST_EMPTY", 7) == 7
    assert env_list("FL_TEST_EMPTY", ["x"]) == ["x"]
    assert env_str("FL_TEST_EMPTY", "d") == "d"
    assert env_str("FL_TEST_UNSET_NAME", "d") == "d"


@pytest.mark.parametrize("reader", [env_int, env_float])
def test_a_malformed_number_names_its_variable(monkeypatch, reader):
    monkeypatch.setenv("FL_TEST_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="FL_TEST_NUMBER"):
        reader("FL_TEST_NUMBER", 1)


def test_without_debug_secret_key_is_required(tmp_path):
    with pytest.raises(ImproperlyConfigured, match=r"^SECRET_KEY must be set when DEBUG is off\.$"):
        check_required_keys(debug=False, secret_key="", credential_keys=["k"], var_dir=tmp_path)
    # Credential keys are required where a credential is stored or read (queue_app/crypto.py).
    check_required_keys(debug=False, secret_key="s", credential_keys=[], var_dir=tmp_path)


def test_with_debug_a_missing_development_key_says_how_to_make_it(tmp_path):
    with pytest.raises(ImproperlyConfigured, match=r"dev-secret-key .*scripts/stack\.py keys"):
        check_required_keys(debug=True, secret_key="", credential_keys=["k"], var_dir=tmp_path)
    with pytest.raises(ImproperlyConfigured, match="CREDENTIAL_ENCRYPTION_KEYS is not set"):
        check_required_keys(debug=True, secret_key="s", credential_keys=[], var_dir=tmp_path)


def test_the_test_settings_hash_fast_and_bring_a_fernet_key():
    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert settings.SECRET_KEY
    Fernet(settings.CREDENTIAL_ENCRYPTION_KEYS[0])


def python_in_a_new_process(code: str, env: dict[str, str]) -> str:
    """What `code` prints, run by a new interpreter in the project with `env` (whole)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def settings_in_a_new_process(var_dir: Path, **env: str) -> str:
    """SECRET_KEY and CREDENTIAL_ENCRYPTION_KEYS as a process importing the settings sees them."""
    code = "import fathomloom.settings as s; print(s.SECRET_KEY, s.CREDENTIAL_ENCRYPTION_KEYS)"
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    clean.pop("CREDENTIAL_ENCRYPTION_KEYS", None)
    return python_in_a_new_process(
        code,
        {**clean, "VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "fathomloom.settings", **env},
    )


def test_importing_the_settings_writes_nothing_and_reads_the_development_keys(tmp_path):
    var_dir = tmp_path / "var"
    settings_in_a_new_process(var_dir, DEBUG="1")
    assert not var_dir.exists()

    var_dir.mkdir()
    key = Fernet.generate_key().decode()
    (var_dir / "dev-secret-key").write_text("dev-secret\n")
    (var_dir / "dev-credential-key").write_text(key)
    assert settings_in_a_new_process(var_dir, DEBUG="1") == f"dev-secret ['{key}']"
    # With DEBUG off the development keys are never used.
    assert settings_in_a_new_process(var_dir, DEBUG="0", SECRET_KEY="s") == "s []"


def database_in_a_new_process(tmp_path: Path, **env: str) -> dict:
    """DATABASES["default"] as a process importing the settings sees it."""
    code = (
        "import json, fathomloom.settings as s; d = s.DATABASES['default'];"
        " print(json.dumps({k: d.get(k) for k in ('CONN_MAX_AGE', 'CONN_HEALTH_CHECKS',"
        " 'OPTIONS')}))"
    )
    return json.loads(
        python_in_a_new_process(
            code, {**os.environ, "VAR_DIR": str(tmp_path), "SECRET_KEY": "x", **env}
        )
    )


def test_a_pool_where_asked_for_keeps_the_urls_options(tmp_path):
    """daphne's pool (DATABASE_POOL, set by asgi.py) goes with the URL's own options and
    replaces the persistent connection (Django refuses both); elsewhere no pool."""
    url = "postgres://user@db.example:5432/name?sslmode=require"
    pooled = database_in_a_new_process(tmp_path, DATABASE_URL=url, DATABASE_POOL="1")
    assert pooled["OPTIONS"]["sslmode"] == "require"
    assert pooled["OPTIONS"]["pool"]["max_size"] == 20
    assert pooled["CONN_MAX_AGE"] == 0 and pooled["CONN_HEALTH_CHECKS"] is True
    plain = database_in_a_new_process(tmp_path, DATABASE_URL=url, DATABASE_POOL="0")
    assert "pool" not in plain["OPTIONS"] and plain["CONN_MAX_AGE"] == 60


def test_the_asgi_server_has_the_pool_and_other_processes_do_not(tmp_path):
    """fathomloom/asgi.py asks for the pool (each request has a thread of its own there);
    a process that imports the settings alone (Celery, manage.py) keeps one connection."""
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "SECRET_KEY": "x",
        "DJANGO_SETTINGS_MODULE": "fathomloom.settings",
        "DATABASE_URL": "postgres://user@db.example:5432/name",
    }
    env.pop("DATABASE_POOL", None)
    check = (
        "import django; from django.conf import settings; django.setup();"
        " print('pool' in settings.DATABASES['default'].get('OPTIONS', {}))"
    )
    asgi = python_in_a_new_process("import fathomloom.asgi; " + check, env)
    alone = python_in_a_new_process(check, env)
    assert (asgi.split()[-1], alone.split()[-1]) == ("True", "False")
