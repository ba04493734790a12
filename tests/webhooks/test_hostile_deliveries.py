"""Correctly signed deliveries with hostile content: a clear 400 (or, for characters no
database stores, a cleaned import), never a 500, nothing written on refusal, no ERROR log.

Run these on PostgreSQL too: it refuses NUL and out-of-range numbers where SQLite does not.
"""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client, override_settings

from queue_app import accounts
from queue_app.models import Meeting
from queue_app.webhooks import sign
from tests.accounts.fakes import meeting_json
from tests.helpers import assert_error
from tests.webhooks.conftest import SECRET, deliver
from tests.webhooks.test_receiver import database_rows

pytestmark = pytest.mark.django_db

# The decoded signing key and its base64 text, as a debug page would print them.
SECRET_KEY_TEXT = "fathom-webhook-signing-key-32byt"
SECRET_BASE64 = SECRET.removeprefix("whsec_")


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_refused(response, caplog, before, *, mentions: str = "") -> str:
    """A 400 `malformed_body` that wrote nothing and logged no error; returns its detail."""
    body = assert_error(response, 400, "malformed_body")
    assert database_rows() == before
    assert not errors_logged(caplog)
    assert mentions in body["detail"], body["detail"]
    return body["detail"]


def nested(depth: int) -> Any:
    """`depth` pairs of {"next": [...]}: 2 * depth levels."""
    value: Any = "bottom"
    for _ in range(depth):
        value = {"next": [value]}
    return value


def with_field(payload: dict[str, Any], name: str, json_text: bytes) -> bytes:
    """The payload's JSON with `name` set to `json_text` as it is (json.dumps would recurse)."""
    return json.dumps({**payload, name: "X"}).encode().replace(b'"X"', json_text)


# --- recording_id -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "recording_id",
    [
        pytest.param(2**63, id="bigint-max-plus-one"),
        pytest.param(2**64, id="2**64"),
        pytest.param(10**30, id="10**30"),
        pytest.param(-(2**63) - 1, id="below-bigint"),
        pytest.param(-1, id="negative"),
        pytest.param(0, id="zero"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(1.5, id="float"),
        pytest.param(1000.0, id="whole-float"),
        pytest.param("123", id="string-digits"),
        pytest.param(None, id="null"),
        pytest.param([1], id="list"),
    ],
)
def test_a_recording_id_that_is_not_a_positive_bigint_is_refused(account, caplog, recording_id):
    before = database_rows()

    response = deliver(account, {**meeting_json(1), "recording_id": recording_id})

    assert_refused(response, caplog, before, mentions="recording_id")


def test_a_recording_id_with_thousands_of_digits_is_refused(account, caplog):
    before = database_rows()

    response = deliver(account, b'{"recording_id": 1' + b"0" * 5000 + b"}")

    assert_refused(response, caplog, before)


def test_the_largest_bigint_is_a_recording_id(account):
    response = deliver(account, meeting_json(2**63 - 1))

    assert response.status_code == 200, response.content
    assert Meeting.objects.get().recording_id == 2**63 - 1


# --- characters no database stores -------------------------------------------------------


def test_nul_and_lone_surrogates_are_cleaned_from_every_string(account, caplog):
    # Fathom's free text (titles people type, summaries, transcripts) is not ours to refuse
    # for one odd character: NUL goes, a lone surrogate becomes U+FFFD, the rest is kept.
    payload = meeting_json(
        77,
        title="Board\u0000 review \ud800",
        meeting_title="Cal\u0000endar",
        default_summary={"markdown_formatted": "## Sum\u0000mary \udfff"},
        recorded_by={"name": "Al\u0000ice", "email": "alice@example.com"},
        transcript=[{"speaker": {"display_name": "\ud83d"}, "text": "hi\u0000"}],
        **{"odd\u0000key": "value", "surrogate\udc00key": 1},
    )

    response = deliver(account, payload)

    assert response.status_code == 200, response.content
    meeting = Meeting.objects.get()
    assert meeting.title == "Board review \ufffd"
    assert meeting.meeting_title == "Calendar"
    assert meeting.summary == "## Summary \ufffd"
    assert meeting.raw["recorded_by"]["name"] == "Alice"
    assert meeting.raw["transcript"][0] == {"speaker": {"display_name": "\ufffd"}, "text": "hi"}
    assert meeting.raw["oddkey"] == "value" and meeting.raw["surrogate\ufffdkey"] == 1
    stored = json.dumps(meeting.raw, ensure_ascii=False)
    assert "\u0000" not in stored
    stored.encode("utf-8")  # no lone surrogate left
    assert not errors_logged(caplog)


def test_a_url_with_nul_is_left_out_not_cut(account):
    response = deliver(account, meeting_json(78, url="https://fathom.video/calls/78\u0000x"))

    assert response.status_code == 200, response.content
    assert Meeting.objects.get().url == ""


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"recording_id": 1, "title": "\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
        pytest.param(b'{"recording_id": 1, "title": "\xff"}', id="not-utf8"),
        pytest.param('{"recording_id": 1}'.encode("utf-16"), id="utf-16"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_refused(account, caplog, body):
    before = database_rows()

    assert_refused(deliver(account, body), caplog, before)


# --- times and durations -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["recording_start_time", "recording_end_time", "created_at"])
@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-14:00",
        "1969-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
    ],
)
def test_a_time_outside_1970_to_2100_is_refused(account, caplog, field, value):
    before = database_rows()

    response = deliver(account, meeting_json(5, **{field: value}))

    assert_refused(response, caplog, before, mentions=field)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z", id="a-month"),
        pytest.param("1970-01-01T00:00:00Z", "2099-12-31T23:59:59Z", id="past-int32-seconds"),
        pytest.param("2025-03-01T00:00:00Z", "2025-02-28T00:00:00Z", id="ends-before-start"),
    ],
)
def test_an_absurd_duration_is_left_unknown(account, start, end):
    response = deliver(account, meeting_json(6, recording_start_time=start, recording_end_time=end))

    assert response.status_code == 200, response.content
    meeting = Meeting.objects.get()
    assert meeting.duration_seconds is None
    assert meeting.recording_start_time is not None and meeting.recording_end_time is not None


def test_a_week_long_recording_keeps_its_duration(account):
    response = deliver(
        account,
        meeting_json(
            6, recording_start_time="2025-03-01T00:00:00Z", recording_end_time="2025-03-08T00:00Z"
        ),
    )

    assert response.status_code == 200, response.content
    assert Meeting.objects.get().duration_seconds == 7 * 24 * 3600


# --- nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="100k-open-brackets"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100k-nested-lists"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="100k-nested-objects"),
        pytest.param(
            with_field(meeting_json(3), "extra", b'{"next": [' * 500 + b"1" + b"]}" * 500),
            id="1000-levels-in-a-field",
        ),
        pytest.param(
            json.dumps(meeting_json(3, extra=nested(20))).encode(), id="41-levels-in-a-field"
        ),
    ],
)
def test_deep_nesting_is_refused_before_parsing(account, caplog, body):
    before = database_rows()

    assert_refused(deliver(account, body), caplog, before, mentions="nested")


def test_brackets_inside_strings_do_not_count_as_nesting(account):
    payload = meeting_json(4, title="[" * 1000 + '\\"{' * 1000, extra=nested(10))

    response = deliver(account, payload)

    assert response.status_code == 200, response.content
    assert Meeting.objects.get().raw["extra"] == nested(10)


# --- numbers JSON does not have ------------------------------------------------------------


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_numbers_that_are_not_finite_are_refused(account, caplog, number):
    before = database_rows()
    body = with_field(meeting_json(8), "extra", number)

    assert_refused(deliver(account, body), caplog, before)


# --- strings longer than their columns -----------------------------------------------------


def test_long_strings_are_cut_or_left_out_to_fit_their_columns(account):
    response = deliver(
        account,
        meeting_json(
            9,
            title="T" * 10_000,
            meeting_title="M" * 10_000,
            url="https://fathom.video/" + "u" * 2000,
            share_url="https://fathom.video/" + "s" * 2000,
        ),
    )

    assert response.status_code == 200, response.content
    meeting = Meeting.objects.get()
    assert (meeting.title, meeting.meeting_title) == ("T" * 500, "M" * 500)
    assert (meeting.url, meeting.share_url) == ("", "")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "https://fathom.video/calls/1 onmouseover=alert(1)",
        "https://fathom.video/calls/1\nx",
    ],
)
def test_a_url_that_is_not_plain_http_is_left_out(account, url):
    # The meetings page links to `url`: a javascript: URL there would run in our origin.
    response = deliver(account, meeting_json(10, url=url, share_url=url))

    assert response.status_code == 200, response.content
    meeting = Meeting.objects.get()
    assert (meeting.url, meeting.share_url) == ("", "")


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize("webhook_id", ["msg_\u0000x", "msg_\u00e9", "msg_\u007f", "msg_\tx"])
def test_a_webhook_id_that_is_not_printable_ascii_is_refused(account, caplog, webhook_id):
    before = database_rows()

    response = deliver(account, meeting_json(11), webhook_id=webhook_id)

    assert_error(response, 400, "malformed_headers")
    assert database_rows() == before
    assert not errors_logged(caplog)


@pytest.mark.parametrize("timestamp", ["1" * 5000, "9" * 30])
def test_a_timestamp_of_thousands_of_digits_is_refused_not_a_500(account, caplog, timestamp):
    # int() refuses strings of more than 4300 digits with a ValueError.
    before = database_rows()
    key = accounts.decode_webhook_secret(SECRET)
    body = json.dumps(meeting_json(14)).encode()
    signature = sign(secret=key, webhook_id="msg_ts", timestamp=timestamp, body=body)

    response = Client().post(
        f"/webhooks/fathom?account={account.webhook_token}",
        data=body,
        content_type="application/json",
        headers={
            "webhook-id": "msg_ts",
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        },
    )

    assert response.status_code == 401, response.content
    assert response.json()["code"] in {"invalid_signature", "stale_timestamp"}
    assert database_rows() == before
    assert not errors_logged(caplog)


@pytest.mark.parametrize("token", ["\u0000", "abc\u0000def", "\u00e9t\u00e9", "t" * 10_000])
def test_an_account_token_that_no_account_could_have_gets_401(account, caplog, token):
    before = database_rows()

    response = deliver(account, meeting_json(11), token=quote(token))

    assert_error(response, 401, "invalid_signature")
    assert database_rows() == before
    assert not errors_logged(caplog)


# --- a refusal records nothing ---------------------------------------------------------------


def test_a_refused_delivery_leaves_its_webhook_id_free_for_a_corrected_one(account):
    hostile = deliver(account, {**meeting_json(12), "recording_id": 2**63}, webhook_id="msg_fix")
    assert hostile.status_code == 400

    corrected = deliver(account, meeting_json(12), webhook_id="msg_fix")

    assert corrected.json() == {"status": "imported", "created": True, "queued": False}


# --- the secret on error pages ----------------------------------------------------------------


def signed_delivery(account) -> dict[str, Any]:
    """The arguments of a signed POST, made before any test patches the decoding."""
    body = json.dumps(meeting_json(13)).encode()
    timestamp = int(time.time())
    signature = sign(
        secret=accounts.decode_webhook_secret(SECRET),
        webhook_id="msg_debug",
        timestamp=timestamp,
        body=body,
    )
    return {
        "path": f"/webhooks/fathom?account={account.webhook_token}",
        "data": body,
        "content_type": "application/json",
        "headers": {
            "webhook-id": "msg_debug",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "accept": "text/html",
        },
    }


def fail_after_decoding(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("forced failure for the test")

    if where == "view":
        # The view holds the decoded key when it hands the delivery on.
        monkeypatch.setattr("queue_app.webhooks.webhook_delivery_import", boom)
    else:
        # decode_webhook_secret holds the `whsec_...` text when it decodes it.
        monkeypatch.setattr("queue_app.accounts.base64", SimpleNamespace(b64decode=boom))


@pytest.mark.parametrize("where", ["view", "decode"])
def test_the_debug_500_page_does_not_show_the_webhook_secret(account, monkeypatch, caplog, where):
    from django.conf import settings

    delivery = signed_delivery(account)
    fail_after_decoding(monkeypatch, where)
    # Without the JSON middleware, so that the HTML debug page itself is the answer.
    middleware = [m for m in settings.MIDDLEWARE if "JsonErrorsMiddleware" not in m]

    with override_settings(DEBUG=True, MIDDLEWARE=middleware):
        response = Client(raise_request_exception=False).post(**delivery)

    assert response.status_code == 500
    page = response.content.decode()
    assert "forced failure for the test" in page  # the debug page, with its frames
    assert SECRET_KEY_TEXT not in page
    assert SECRET_BASE64 not in page


@pytest.mark.parametrize("where", ["view", "decode"])
def test_the_error_report_of_a_webhook_failure_does_not_show_the_secret(
    account, monkeypatch, caplog, where
):
    # What AdminEmailHandler would mail with DEBUG off: the logged record's report.
    from django.views.debug import ExceptionReporter

    delivery = signed_delivery(account)
    fail_after_decoding(monkeypatch, where)

    response = Client(raise_request_exception=False).post(**delivery)

    assert_error(response, 500, "server_error")
    [record] = errors_logged(caplog)
    report = ExceptionReporter(record.request, *record.exc_info, is_email=True)
    for text in (report.get_traceback_text(), report.get_traceback_html()):
        assert "forced failure for the test" in text
        assert SECRET_KEY_TEXT not in text
        assert SECRET_BASE64 not in text
