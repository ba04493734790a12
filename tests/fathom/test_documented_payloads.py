"""The client against Fathom's documented payloads (copied from its API reference's
examples and the fathom-python 0.0.43 models), served as recorded answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from queue_app.integrations.fathom import (
    FathomClient,
    FathomDownloadExpired,
    FathomDownloadFailed,
    parse_download_status,
)

from . import schemas

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def recorded(answers: dict[tuple[str, str], tuple[int, dict | None]], seen: list) -> FathomClient:
    """A client whose API calls get the recorded answers; every request is kept in `seen`."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers[(request.method, request.url.path)]
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    client = FathomClient("fk_recorded_payloads_key", base_url="https://api.fathom.test/v1")
    client._api = httpx.Client(
        base_url=client.base_url,
        transport=httpx.MockTransport(handler),
        headers={"X-Api-Key": "fk_recorded_payloads_key"},
    )
    return client


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("download_completed_video", schemas.RECORDING_DOWNLOAD),
        ("download_completed_audio", schemas.RECORDING_DOWNLOAD),
        ("download_processing", schemas.RECORDING_DOWNLOAD),
        ("download_failed_generation_failed", schemas.RECORDING_DOWNLOAD),
        ("download_failed_generation_timeout", schemas.RECORDING_DOWNLOAD),
        ("download_expired", schemas.RECORDING_DOWNLOAD),
        ("webhook_created", schemas.WEBHOOK),
        ("meetings_page", schemas.MEETING_LIST),
    ],
)
def test_the_recorded_payloads_are_fathoms_documented_shapes(name, model):
    jsonschema.validate(payload(name), model)


def test_a_completed_video_download_is_transferred_as_video():
    status = parse_download_status(payload("download_completed_video"))
    assert status.media_kind == "video"
    assert status.media_url.endswith("video.mp4?X-Amz-Signature=abc")
    assert status.media_size == 48213904
    assert status.recording_id == 123456789


def test_an_audio_only_download_is_not_malformed_and_its_audio_is_transferred():
    status = parse_download_status(payload("download_completed_audio"))
    assert status.video is None
    assert status.media_kind == "audio"
    assert status.media.content_type == "audio/mp4"
    assert status.media_size == 5120334


def test_a_first_answer_already_completed_is_used_without_polling():
    seen: list[httpx.Request] = []
    client = recorded(
        {("POST", "/v1/recordings/123456790/download"): (202, payload("download_completed_audio"))},
        seen,
    )
    first = client.request_download(123456790)
    assert client.settle_download(first, 123456790) is first
    assert [r.method for r in seen] == ["POST"]


@pytest.mark.parametrize(
    ("name", "transient", "words"),
    [
        ("download_failed_generation_failed", False, "could not produce a file"),
        ("download_failed_generation_timeout", True, "took too long"),
    ],
)
def test_failure_reason_is_read_and_told_in_words(name, transient, words):
    client = FathomClient("fk_recorded_payloads_key", base_url="https://api.fathom.test/v1")
    status = parse_download_status(payload(name))
    with pytest.raises(FathomDownloadFailed) as caught:
        client.settle_download(status, 123456789)
    error = caught.value
    assert error.transient is transient
    assert words in error.reason and "recording 123456789" in error.reason
    assert error.failure_reason == payload(name)["failure_reason"]
    assert error.failure_reason in error.reason
    assert "no reason" not in error.reason


def test_an_expired_download_asks_for_a_new_one():
    client = FathomClient("fk_recorded_payloads_key", base_url="https://api.fathom.test/v1")
    with pytest.raises(FathomDownloadExpired) as caught:
        client.settle_download(parse_download_status(payload("download_expired")), 123456789)
    assert caught.value.transient is True


def test_destination_url_goes_in_the_request_body():
    seen: list[httpx.Request] = []
    client = recorded(
        {("POST", "/v1/recordings/123456789/download"): (202, payload("download_processing"))},
        seen,
    )
    status = client.request_download(123456789, destination_url="https://q.example/cb?account=t")
    assert status.status == "processing" and status.download_id.startswith("dl_")
    assert json.loads(seen[0].content) == {"destination_url": "https://q.example/cb?account=t"}


def test_the_documented_meeting_gives_every_field_users_filter_and_read_by():
    seen: list[httpx.Request] = []
    client = recorded({("GET", "/v1/meetings"): (200, payload("meetings_page"))}, seen)
    (meeting,) = list(client.iter_meetings(include_transcript=True, include_highlights=True))
    assert meeting.meeting_type == "Customer call"
    assert meeting.meeting_url == "https://meet.google.com/abc-defg-hij"
    assert meeting.shared_with == "single_team"
    assert meeting.team == "Customer Success"
    assert meeting.summary.startswith("## Summary")
    assert meeting.transcript == [
        {
            "speaker": "Jane Doe",
            "text": "Let's revisit the budget allocations.",
            "timestamp": "00:05:32",
        },
        {
            "speaker": "John Smith",
            "text": "I agree, we need to adjust our projections.",
            "timestamp": "00:05:40",
        },
    ]
    assert meeting.raw["highlights"][0]["summary"] == "Budget risk"
    query = seen[0].url.params
    assert query["include_transcript"] == "true" and query["include_highlights"] == "true"
    assert "limit" not in query


def test_create_webhook_sends_the_documented_body_and_reads_id_and_secret():
    seen: list[httpx.Request] = []
    client = recorded(
        {
            ("POST", "/v1/webhooks"): (201, payload("webhook_created")),
            ("DELETE", "/v1/webhooks/ikEoQ4bVoq4JYUmc"): (204, None),
        },
        seen,
    )
    created = client.create_webhook(
        "https://example.com/webhook",
        triggered_for=["my_recordings"],
        include_transcript=True,
        include_summary=True,
    )
    client.delete_webhook(created.id)

    assert (created.id, created.secret) == ("ikEoQ4bVoq4JYUmc", "whsec_x6EV6NIAAz3ldclszNJTwrow")
    assert "whsec" not in repr(created)
    body = json.loads(seen[0].content)
    assert body == {
        "destination_url": "https://example.com/webhook",
        "triggered_for": ["my_recordings"],
        "include_transcript": True,
        "include_summary": True,
        "include_action_items": False,
        "include_crm_matches": False,
    }
    assert seen[1].method == "DELETE"
