"""Production settings: `manage.py check --deploy` passes with the variables that
docs/operations.md lists, HTTPS turns on by SECURE_SSL or behind a TLS proxy
(TRUSTED_PROXY_SSL_HEADER), and every page carries a Content-Security-Policy that allows
no inline script or style (Swagger UI's one inline script and style carry the nonce)."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[1]

# Every variable the production settings read that a test's environment might carry.
PRODUCTION_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "CREDENTIAL_ENCRYPTION_KEYS",
    "ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "SECURE_SSL",
    "TRUSTED_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
)


def production_env(**overrides: str | None) -> dict[str, str]:
    """The documented production variables (docs/operations.md), then `overrides`; None
    leaves a variable out."""
    env = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CREDENTIAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "queue.example.com",
        "PUBLIC_BASE_URL": "https://queue.example.com",
        "SECURE_SSL": "1",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def run_django(args: list[str], env: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess:
    """`args` run with the project's (not the tests') settings and only `env`'s production
    variables."""
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES}
    return subprocess.run(
        [sys.executable, *args],
        env={
            **clean,
            "VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "fathomloom.settings",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_deploy(env: dict[str, str], var_dir: Path) -> tuple[int, set[str], str]:
    """(exit code, the ids of the warnings and errors reported, the whole output)."""
    result = run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, var_dir)
    output = result.stdout + result.stderr
    return result.returncode, set(re.findall(r"\(([\w.]+\.[WE]\d+)\)", output)), output


def https_settings(env: dict[str, str], var_dir: Path) -> dict:
    code = (
        "import json; import fathomloom.settings as s; print(json.dumps({name: getattr(s, name) "
        "for name in ['SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
        "'SECURE_PROXY_SSL_HEADER', 'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS', "
        "'SECURE_REFERRER_POLICY']}))"
    )
    result = run_django(["-c", code], env, var_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- manage.py check --deploy ---------------------------------------------------------------


def test_check_deploy_passes_with_the_documented_production_variables(tmp_path):
    code, reported, output = check_deploy(production_env(), tmp_path)
    assert (code, reported) == (0, set()), output


def test_without_https_check_deploy_names_what_secure_ssl_turns_on(tmp_path):
    code, reported, output = check_deploy(production_env(SECURE_SSL=None), tmp_path)
    assert code != 0
    # HSTS, the redirect to HTTPS, and the two secure-only cookies: nothing else.
    assert reported == {"security.W004", "security.W008", "security.W012", "security.W016"}, output


def test_behind_a_tls_proxy_check_deploy_passes_without_secure_ssl(tmp_path):
    env = production_env(SECURE_SSL=None, TRUSTED_PROXY_SSL_HEADER="X-Forwarded-Proto")
    code, reported, output = check_deploy(env, tmp_path)
    assert (code, reported) == (0, set()), output


def test_an_http_public_base_url_while_https_is_on_is_a_deploy_warning(tmp_path):
    env = production_env(PUBLIC_BASE_URL="http://queue.example.com")
    code, reported, output = check_deploy(env, tmp_path)
    assert code != 0
    assert reported == {"fathomloom.W001"}, output
    assert "PUBLIC_BASE_URL" in output


# --- what SECURE_SSL and TRUSTED_PROXY_SSL_HEADER turn on -----------------------------------

HTTPS_ON = {
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
}
ALWAYS = {
    "SECURE_CONTENT_TYPE_NOSNIFF": True,
    "X_FRAME_OPTIONS": "DENY",
    "SECURE_REFERRER_POLICY": "same-origin",
}


def test_secure_ssl_turns_on_the_redirect_secure_cookies_and_hsts(tmp_path):
    assert https_settings(production_env(), tmp_path) == {
        **HTTPS_ON,
        **ALWAYS,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_without_secure_ssl_nothing_assumes_https(tmp_path):
    assert https_settings(production_env(SECURE_SSL=None), tmp_path) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        **ALWAYS,
        "SECURE_PROXY_SSL_HEADER": None,
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("X-Forwarded-Proto", ["HTTP_X_FORWARDED_PROTO", "https"]),
        (" x-forwarded-ssl : on ", ["HTTP_X_FORWARDED_SSL", "on"]),
    ],
)
def test_a_trusted_proxy_header_turns_https_on(tmp_path, header, expected):
    env = production_env(SECURE_SSL=None, TRUSTED_PROXY_SSL_HEADER=header)
    assert https_settings(env, tmp_path) == {
        **HTTPS_ON,
        **ALWAYS,
        "SECURE_PROXY_SSL_HEADER": expected,
    }


def test_each_https_default_can_be_changed(tmp_path):
    env = production_env(
        SECURE_HSTS_SECONDS="3600", SECURE_HSTS_INCLUDE_SUBDOMAINS="0", SECURE_HSTS_PRELOAD="0"
    )
    got = https_settings(env, tmp_path)
    assert (
        got["SECURE_HSTS_SECONDS"],
        got["SECURE_HSTS_INCLUDE_SUBDOMAINS"],
        got["SECURE_HSTS_PRELOAD"],
    ) == (3600, False, False)
    # Behind a proxy that also serves plain HTTP on purpose: trust its header, redirect nothing.
    env = production_env(SECURE_SSL="0", TRUSTED_PROXY_SSL_HEADER="X-Forwarded-Proto")
    got = https_settings(env, tmp_path)
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert (got["SECURE_SSL_REDIRECT"], got["SESSION_COOKIE_SECURE"]) == (False, False)


@pytest.mark.parametrize("header", ["X Forwarded Proto", "X-Forwarded-Proto:", ":https"])
def test_a_malformed_proxy_header_stops_the_process_naming_the_variable(tmp_path, header):
    env = production_env(SECURE_SSL=None, TRUSTED_PROXY_SSL_HEADER=header)
    result = run_django(["-c", "import fathomloom.settings"], env, tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured: TRUSTED_PROXY_SSL_HEADER" in result.stderr
    # The message says what is expected, not a Python traceback deep in Django.
    assert "a header name" in result.stderr


@pytest.mark.django_db
def test_the_redirect_to_https_spares_the_probes(settings, caplog):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()
    response = client.get("/queue")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/queue"
    # A load balancer or orchestrator asks daphne directly, over plain HTTP.
    assert client.get("/healthz").status_code == 200
    # Through the proxy the request counts as HTTPS: no redirect (the login page instead).
    response = client.get("/queue", headers={"x-forwarded-proto": "https"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- Content-Security-Policy ----------------------------------------------------------------

EXPECTED_POLICY = {
    "default-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "frame-ancestors": ["'none'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
}


def parse_policy(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class InlineCode(HTMLParser):
    """Inline script and style in a page: what a CSP without 'unsafe-inline' blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str | None] = []  # the nonce of each inline script
        self.styles: list[str | None] = []  # the nonce of each <style>
        self.attributes: list[str] = []  # style="" and on...="" attributes

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        # A JSON data block (json_script) is never run, so CSP leaves it alone.
        if tag == "script" and "src" not in named and named.get("type") != "application/json":
            self.scripts.append(named.get("nonce"))
        if tag == "style":
            self.styles.append(named.get("nonce"))
        self.attributes += [
            f"<{tag} {name}>" for name, _ in attrs if name == "style" or name.startswith("on")
        ]


@pytest.fixture
def as_user(alice, staff):
    def client(who: str) -> Client:
        client = Client()
        if who != "anonymous":
            client.force_login({"alice": alice, "staff": staff}[who])
        return client

    return client


PAGES = [
    ("anonymous", "/accounts/login/", 200),
    ("alice", "/", 200),
    ("alice", "/queue", 200),
    ("staff", "/monitor", 200),
    ("alice", "/monitor", 403),
    ("anonymous", "/no-such-page", 404),
    ("anonymous", "/admin/login/", 200),
    ("staff", "/admin/", 200),
    ("staff", "admin:queue_app_queueentry_changelist", 200),
    ("staff", "admin:queue_app_queueentry_clear", 200),
    ("staff", "admin:auth_user_add", 200),
    ("anonymous", "/api/docs/", 200),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("who", "page", "status"), PAGES)
def test_every_page_has_a_csp_without_inline_script_or_style(
    as_user, settings, who, page, status, caplog
):
    url = page if page.startswith("/") else reverse(page)
    response = as_user(who).get(url)
    assert response.status_code == status

    policy = parse_policy(response["Content-Security-Policy"])
    assert {name: policy.get(name) for name in EXPECTED_POLICY} == EXPECTED_POLICY
    # The WebSocket: 'self' matches ws/wss of this host in CSP3 browsers; the origin of
    # PUBLIC_BASE_URL is named for those that predate it.
    public = urlsplit(settings.PUBLIC_BASE_URL)
    ws_origin = f"{'wss' if public.scheme == 'https' else 'ws'}://{public.netloc}"
    assert policy["connect-src"] == ["'self'", ws_origin]
    html = response.content.decode()
    found = InlineCode()
    found.feed(html)
    assert None not in found.scripts, "an inline script without the nonce"
    assert None not in found.styles, "a <style> without the nonce"
    assert found.attributes == []
    nonces = {f"'nonce-{nonce}'" for nonce in found.scripts + found.styles}
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive]
        assert "'unsafe-eval'" not in policy[directive]
        # 'self', and the nonce only where the page has inline code that carries it.
        assert set(policy[directive]) == {"'self'", *nonces}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.django_db
def test_only_swagger_ui_uses_the_nonce_and_it_changes_with_each_answer(as_user):
    first, second = (as_user("anonymous").get("/api/docs/") for _ in range(2))
    nonces = [
        re.search(r"'nonce-([^']+)'", parse_policy(r["Content-Security-Policy"])["script-src"][1])
        for r in (first, second)
    ]
    assert all(nonces) and nonces[0].group(1) != nonces[1].group(1)
    assert f'<script nonce="{nonces[0].group(1)}">' in first.content.decode()
    assert parse_policy(as_user("alice").get("/queue")["Content-Security-Policy"])[
        "script-src"
    ] == ["'self'"]


def test_api_answers_carry_the_policy_too(client):
    # JSON cannot run, but a browser shown an API error page still gets no inline code.
    response = client.get("/api/queue")
    assert response.status_code == 401
    assert parse_policy(response["Content-Security-Policy"])["script-src"] == ["'self'"]
