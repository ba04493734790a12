"""Hostile HTTP input gets a clear 4xx, changes nothing and logs no traceback: request bodies
(nesting, encodings, size), Range headers on share links, and paths that climb out of /static/.
"""

from __future__ import annotations

import logging
import os

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from queue_app.api.parsers import MAX_DEPTH, exceeds_depth
from queue_app.integrations.uploaders import LocalUploader
from queue_app.models import FathomAccount, Meeting
from tests.helpers import assert_error, queue_rows

pytestmark = pytest.mark.django_db

JSON_ENDPOINTS = ["/api/queue", "/api/auth/token", "/api/credentials/fathom"]
# Reading the body comes after authentication: an anonymous caller of these is refused first.
SIGNED_IN_ONLY = {"/api/queue", "/api/credentials/fathom"}


def all_rows() -> dict[str, list]:
    """Every row a POST to JSON_ENDPOINTS could write: equal before and after = no change."""
    return {
        **queue_rows(),
        "meetings": list(Meeting.objects.order_by("pk").values()),
        "accounts": list(FathomAccount.objects.order_by("pk").values()),
        "tokens": list(Token.objects.order_by("pk").values_list("pk", flat=True)),
    }


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.fixture
def callers(client_for, alice, make_meeting):
    make_meeting(alice)  # something the queue could take
    return {"anonymous": APIClient(), "signed-in": client_for(alice)}


def post_each(callers, body: bytes, content_type: str, expect_signed_in: tuple[int, str], caplog):
    """POST `body` to every JSON endpoint as each caller; check the answer and no change."""
    caplog.set_level(logging.INFO)
    for name, client in callers.items():
        client.raise_request_exception = False  # a 500 must show as a 500, not an exception
        for path in JSON_ENDPOINTS:
            before = all_rows()
            response = client.post(path, body, content_type=content_type)
            if name == "anonymous" and path in SIGNED_IN_ONLY:
                assert_error(response, 401, "not_authenticated")
            else:
                status, code = expect_signed_in
                body_json = assert_error(response, status, code)
                assert set(body_json) <= {"code", "detail", "fields"}, (name, path)
            assert all_rows() == before, (name, path)
    assert errors_logged(caplog) == []


# --- JSON nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="100000-lists"),
        pytest.param(b'{"a":' * 100_000, id="100000-objects"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100000-balanced"),
        pytest.param(
            b'{"meeting_id": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", id="one-past-the-bound"
        ),
    ],
)
def test_json_nested_too_deep_is_a_400_parse_error(callers, caplog, body):
    post_each(callers, body, "application/json", (400, "parse_error"), caplog)


def test_json_nested_within_the_bound_reaches_the_serializers(callers, caplog):
    inner = MAX_DEPTH - 1  # plus the outer object: exactly MAX_DEPTH levels
    body = b'{"meeting_id": ' + b"[" * inner + b"]" * inner + b"}"
    for client in callers.values():
        response = client.post("/api/auth/token", body, content_type="application/json")
        assert_error(response, 400, "invalid")  # no username and password: parsed, then refused
    signed_in = callers["signed-in"]
    assert_error(
        signed_in.post("/api/queue", body, content_type="application/json"), 400, "invalid"
    )


def test_brackets_inside_strings_do_not_count_as_nesting(callers):
    text = '"' + "[{" * 5_000 + '\\"' + "[" * 100 + '"'
    body = ('{"meeting_id": ' + text + "}").encode()
    response = callers["signed-in"].post("/api/queue", body, content_type="application/json")
    body_json = assert_error(response, 400, "invalid")
    assert "meeting_id" in body_json["fields"]


def test_the_depth_scan():
    assert not exceeds_depth("[" * MAX_DEPTH + "]" * MAX_DEPTH, MAX_DEPTH)
    assert exceeds_depth("[" * (MAX_DEPTH + 1), MAX_DEPTH)
    assert exceeds_depth('{"a": ' * (MAX_DEPTH + 1), MAX_DEPTH)
    assert not exceeds_depth('["' + "[" * 1000 + '"]', MAX_DEPTH)
    assert not exceeds_depth('["\\"' + "[" * 1000 + '\\\\"]', MAX_DEPTH)
    # Many brackets, little depth: a long flat list of lists.
    assert not exceeds_depth("[" + "[]," * 100_000 + "[]]", MAX_DEPTH)


# --- encodings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"username": "caf\xe9"}', "application/json", id="latin-1-bytes"),
        pytest.param(
            b'{"username": "\\ud800", "password": "x", "meeting_id": 1, "api_key": "\\udfff1234"}',
            "application/json",
            id="lone-surrogates",
        ),
        pytest.param(
            '{"username": "alice", "password": "x"}'.encode("utf-16"),
            "application/json; charset=utf-16",
            id="utf-16",
        ),
        pytest.param(
            b'{"username": "alice", "password": "x"}',
            "application/json; charset=latin-1",
            id="latin-1-charset",
        ),
        pytest.param(
            b'{"username": "x", "password": "x"}',
            "application/json; charset=bz2_codec",
            id="bz2-charset",
        ),
        pytest.param(b'{"meeting_id": NaN}', "application/json", id="nan"),
        pytest.param(b'{"meeting_id": ' + b"1" * 5000 + b"}", "application/json", id="5000-digits"),
        pytest.param(b"\xef\xbb\xbf{}", "application/json", id="byte-order-mark"),
    ],
)
def test_json_that_is_not_utf8_text_is_a_400_parse_error(callers, caplog, body, content_type):
    post_each(callers, body, content_type, (400, "parse_error"), caplog)


def test_escaped_surrogate_pairs_are_text_and_accepted(client_for, alice):
    """An escaped pair, "\\ud83d\\ude00", is one character (an emoji): it is text."""
    body = b'{"username": "\\ud83d\\ude00", "password": "x"}'
    response = APIClient().post("/api/auth/token", body, content_type="application/json")
    assert_error(response, 400, "invalid_credentials")


# --- size ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"x": "' + b"a" * 5000 + b'"}', "application/json", id="json"),
        pytest.param(b"x=" + b"a" * 5000, "application/x-www-form-urlencoded", id="form"),
        pytest.param(
            b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n'
            + b"a" * 5000
            + b"\r\n--B--\r\n",
            "multipart/form-data; boundary=B",
            id="multipart",
        ),
    ],
)
def test_a_body_over_the_size_limit_is_a_413(callers, caplog, settings, body, content_type):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    post_each(callers, body, content_type, (413, "too_large"), caplog)


def test_too_many_form_fields_is_a_413(callers, caplog, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 100
    body = "&".join(f"f{number}=1" for number in range(200)).encode()
    post_each(callers, body, "application/x-www-form-urlencoded", (413, "too_large"), caplog)


def test_a_body_over_the_size_limit_is_a_413_for_a_browser_too(client_for, alice, caplog, settings):
    """The browsable API renders the request's data; a body it cannot read must not break it."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = client_for(alice)
    client.raise_request_exception = False
    response = client.post(
        "/api/queue",
        b'{"x": "' + b"a" * 5000 + b'"}',
        content_type="application/json",
        HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8",
    )
    assert response.status_code == 413
    assert errors_logged(caplog) == []


# --- Range on share links ------------------------------------------------------------------------

SIZE = 20_000


@pytest.fixture
def shared(settings, tmp_path):
    """(token, bytes) of a video behind a share link of the local uploader."""
    settings.MEDIA_ROOT = tmp_path / "media"
    source = tmp_path / "in.mp4"
    data = os.urandom(SIZE)
    source.write_bytes(data)
    token = LocalUploader().upload(source, title="t", description="").share_url.rsplit("/", 1)[1]
    return token, data


def get_range(token: str, header: str):
    response = Client(raise_request_exception=False).get(f"/share/{token}", HTTP_RANGE=header)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


HUGE = "9" * 5000  # past Python's 4300-digit limit of int()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"bytes={HUGE}-", id="huge-first"),
        pytest.param(f"bytes={HUGE}-{HUGE}", id="huge-both"),
        pytest.param(f"bytes={'1' * 19}-", id="19-digits"),
        pytest.param(f"bytes={SIZE}-", id="at-the-end"),
        pytest.param("bytes=-0", id="empty-suffix"),
        pytest.param(f"bytes=-{'0' * 5000}", id="empty-suffix-5000-zeros"),
    ],
)
def test_an_unsatisfiable_range_is_a_416(shared, caplog, header):
    """RFC 9110 14.1.1: satisfiable only if a first-pos is below the length or a suffix is
    not empty; otherwise 416 with `Content-Range: bytes */length` (15.5.17)."""
    token, _ = shared
    response, _ = get_range(token, header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{SIZE}"
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        pytest.param(f"bytes=0-{HUGE}", 0, SIZE - 1, id="huge-last"),
        pytest.param(f"bytes=-{HUGE}", 0, SIZE - 1, id="huge-suffix"),
        pytest.param(f"bytes={'0' * 5000}5-9", 5, 9, id="5000-leading-zeros"),
        pytest.param("Bytes=10-19", 10, 19, id="unit-any-case"),
    ],
)
def test_a_satisfiable_range_with_long_numbers_is_a_206(shared, caplog, header, start, end):
    """A last-pos past the end means the end; a suffix longer than the file, all of it."""
    token, data = shared
    response, body = get_range(token, header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert body == data[start : end + 1]
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("items=0-1", id="unknown-unit"),
        pytest.param("bytes=5-2", id="last-before-first"),
        pytest.param("bytes=0-1,5-6", id="several-ranges"),
        pytest.param("bytes=", id="no-range"),
        pytest.param("bytes=a-b", id="not-numbers"),
        pytest.param("bytes=\u0661-\u0662", id="arabic-indic-digits"),
        pytest.param(f"bytes={HUGE}", id="no-dash"),
    ],
)
def test_a_range_we_cannot_read_is_ignored_and_the_whole_video_sent(shared, caplog, header):
    """RFC 9110 14.2: a server MUST ignore a range unit it does not understand and MAY ignore
    an invalid range or one it does not support (several): 200 with the whole video."""
    token, data = shared
    response, body = get_range(token, header)
    assert response.status_code == 200
    assert body == data
    assert response["Accept-Ranges"] == "bytes"
    assert errors_logged(caplog) == []


# --- paths that climb out of /static/ ------------------------------------------------------------

SECRET = "not-for-the-web-7f3a9c"
CLIMBING_PATHS = [
    "/static/../var/dev-secret-key",
    "/static/%2e%2e/var/dev-secret-key",
    "/static/..%2fvar%2fdev-secret-key",
    "/static/../dev-secret-key",
    "/static/%2e%2e/dev-secret-key",
    "/static/..%2fdev-secret-key",
    "/static/%2e%2e%2fdev-secret-key",
    "/static/..%5cdev-secret-key",
    "/static/..%252fdev-secret-key",
    "/static/queue_app/../../dev-secret-key",
    # queue_app/static/ is a finder's directory: one level up is the app's source.
    "/static/../models.py",
    "/static/..%2fmodels.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
]


@pytest.fixture
def var_with_secret(settings, tmp_path):
    """STATIC_ROOT inside a VAR_DIR holding a development key, as `make run` lays them out."""
    var = tmp_path / "var"
    (var / "static").mkdir(parents=True)
    (var / "dev-secret-key").write_text(SECRET)
    settings.STATIC_ROOT = var / "static"
    return var


def fetch(path: str, *, asgi: bool):
    # A new client per request: the middleware (WhiteNoise reads DEBUG) is built for it.
    if asgi:  # as daphne hands it over: the path percent-decoded once, in the scope
        response = async_to_sync(AsyncClient(raise_request_exception=False).get)(path)
    else:
        response = Client(raise_request_exception=False).get(path)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
def test_paths_out_of_static_are_404(var_with_secret, settings, caplog, debug, asgi):
    settings.DEBUG = debug
    served, _ = fetch("/static/queue_app/site.css", asgi=asgi)
    assert served.status_code == 200  # the static files are served: the 404s below are real
    for path in CLIMBING_PATHS:
        response, body = fetch(path, asgi=asgi)
        assert response.status_code == 404, path
        assert SECRET.encode() not in body, path
        assert b"class Meeting" not in body, path
    assert errors_logged(caplog) == []
