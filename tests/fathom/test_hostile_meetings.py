"""Hostile meetings from Fathom's GET /meetings: parse_meeting refuses them with a permanent
FathomMalformedResponse (or cleans what no database stores), and a sync writes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from queue_app import importing
from queue_app.errors import FathomBadResponse
from queue_app.integrations.fathom import FathomClient, FathomMalformedResponse, parse_meeting
from queue_app.integrations.fathom.parsing import MAX_DEPTH, parse_json
from queue_app.models import Meeting
from tests.accounts.fakes import FakeFathom, meeting_json

KEY = "fk_live_hostile_pages_0000000"


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


HOSTILE = [
    pytest.param({"recording_id": 2**63}, id="recording_id-past-bigint"),
    pytest.param({"recording_id": -5}, id="recording_id-negative"),
    pytest.param({"recording_id": 0}, id="recording_id-zero"),
    pytest.param({"recording_start_time": "0001-01-01T00:00:00+14:00"}, id="year-1"),
    pytest.param({"recording_end_time": "9999-12-31T23:59:59-14:00"}, id="year-9999"),
    pytest.param({"created_at": "9999-12-31T23:59:59Z"}, id="created-9999"),
    pytest.param({"extra": deep(MAX_DEPTH)}, id="too-deep"),
    pytest.param({"extra": float("nan")}, id="nan"),
    pytest.param({"extra": float("inf")}, id="infinity"),
    pytest.param({"extra": {1: "not a JSON key"}}, id="non-string-key"),
    pytest.param({"extra": object()}, id="not-json"),
]


@pytest.mark.parametrize("change", HOSTILE)
def test_parse_meeting_refuses_a_hostile_meeting(change):
    with pytest.raises(FathomMalformedResponse) as refused:
        parse_meeting({**meeting_json(1), **change})

    assert not refused.value.transient
    assert refused.value.reason.startswith("Fathom sent a malformed meeting")


def test_parse_meeting_cleans_nul_and_lone_surrogates_and_keeps_the_rest():
    meeting = parse_meeting(
        {
            **meeting_json(1, title="A\u0000B\ud800"),
            "default_summary": {"markdown_formatted": "S\u0000"},
            "k\u0000ey": ["v\udfff", {"n": None, "b": True, "f": 1.5, "i": 2**70}],
        }
    )

    assert meeting.title == "AB\ufffd"
    assert meeting.summary == "S"
    assert meeting.raw["key"] == ["v\ufffd", {"n": None, "b": True, "f": 1.5, "i": 2**70}]
    assert meeting.recording_start_time.tzinfo is not None


def test_parse_meeting_takes_a_naive_time_as_utc():
    meeting = parse_meeting(meeting_json(1, recording_start_time="2025-03-01T16:01:12"))

    assert meeting.recording_start_time.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 100_000, id="100k-open"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="100k-nested"),
        pytest.param("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), id="one-too-deep"),
    ],
)
def test_parse_json_refuses_deep_nesting_without_recursing(text):
    with pytest.raises(FathomMalformedResponse, match="nested"):
        parse_json(text.encode(), "meetings page")


def test_parse_json_takes_the_deepest_nesting_allowed_and_brackets_in_strings():
    inside = '[[{"\\"' * 100  # brackets and escaped quotes in a string are not nesting
    text = "[" * MAX_DEPTH + json.dumps(inside) + "]" * MAX_DEPTH

    value = parse_json(text.encode(), "meetings page")

    for _ in range(MAX_DEPTH):
        [value] = value
    assert value == inside


def test_parse_json_is_quick_on_two_megabytes_of_brackets():
    import time

    started = time.perf_counter()
    for text in (b"[]" * 1_250_000, b'"\\"' * 800_000, b"[" * 2_500_000):
        with pytest.raises(FathomMalformedResponse):
            parse_json(text, "meetings page")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "body",
    [b"NaN", b"[1, Infinity]", b"\xff", "[1]".encode("utf-16"), b"1" * 5000],
)
def test_parse_json_refuses_what_is_not_json(body):
    with pytest.raises(FathomMalformedResponse):
        parse_json(body, "meetings page")


# --- a sync meets a hostile page ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("change", HOSTILE[:7])
def test_a_sync_with_a_hostile_meeting_is_refused_and_writes_nothing(alice, change):
    importing.meetings_sync(
        user=alice, client=FakeFathom(KEY, valid_keys={KEY}, pages=[[meeting_json(1)]])
    )
    before = list(Meeting.objects.values())
    hostile = [[meeting_json(1, title="Renamed"), meeting_json(2)], [{**meeting_json(3), **change}]]

    with pytest.raises(FathomBadResponse, match="malformed meeting"):
        importing.meetings_sync(user=alice, client=FakeFathom(KEY, valid_keys={KEY}, pages=hostile))

    assert list(Meeting.objects.values()) == before


@pytest.mark.django_db
def test_a_sync_stores_cleaned_text(alice):
    page = [[meeting_json(1, title="Ti\u0000tle\ud800", transcript=[{"text": "\u0000"}])]]

    importing.meetings_sync(user=alice, client=FakeFathom(KEY, valid_keys={KEY}, pages=page))

    meeting = Meeting.objects.get()
    assert meeting.title == "Title\ufffd"
    assert meeting.raw["transcript"] == [{"text": ""}]


def test_the_client_refuses_a_hostile_page_from_the_wire():
    page = {"items": [{**meeting_json(1), "recording_id": 2**64}], "next_cursor": None}

    def fathom(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=page)

    client = FathomClient(KEY, base_url="https://fathom.invalid/external/v1")
    client._api = httpx.Client(base_url=client.base_url, transport=httpx.MockTransport(fathom))
    with client, pytest.raises(FathomMalformedResponse, match="recording_id"):
        list(client.iter_meetings())


def test_a_deeply_nested_answer_from_fathom_is_a_clear_refusal_not_a_crash():
    """A page of 100,000 nested brackets made json.loads raise RecursionError (a 500 from
    a sync); the client's bounded parsing refuses it as a malformed answer."""
    import httpx

    from queue_app.integrations.fathom import FathomClient, FathomMalformedResponse

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" * 100_000)

    client = FathomClient("fk_test_key_12345678", base_url="https://fathom.test/v1")
    client._api = httpx.Client(base_url=client.base_url, transport=httpx.MockTransport(answer))
    with pytest.raises(FathomMalformedResponse, match="malformed JSON while listing meetings"):
        list(client.iter_meetings())
