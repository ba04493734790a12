"""The sandbox driven through every documented shape, and the client's handling of each;
every answer is checked against Fathom's published response models (schemas.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import jsonschema
import pytest

from queue_app.integrations.fathom import (
    FathomClient,
    FathomDownloadExpired,
    FathomDownloadFailed,
    FathomNoAccess,
    FathomNoMedia,
    FathomRejected,
)

from . import schemas
from .conftest import ALICE_KEY


def api(sandbox, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"X-Api-Key": ALICE_KEY}
    return httpx.request(method, sandbox.base_url + path, headers=headers, timeout=5, **kwargs)


def download_calls(control, recording_id: int) -> list[dict]:
    return [r for r in control.requests() if f"/recordings/{recording_id}/" in r["path"]]


# --- the published response models ------------------------------------------------------------


def test_every_sandbox_answer_validates_against_fathoms_models(sandbox, control):
    everything = "include_summary=true&include_transcript=true&include_action_items=true"
    everything += "&include_crm_matches=true&include_highlights=true"
    control.add_meeting(ALICE_KEY, 7001, audio_only=True)
    control.configure(processing_polls=1)
    checks = [
        (api(sandbox, "GET", "/meetings"), schemas.MEETING_LIST),
        (api(sandbox, "GET", f"/meetings?{everything}"), schemas.MEETING_LIST),
        (api(sandbox, "GET", "/teams"), schemas.TEAM_LIST),
        (api(sandbox, "GET", "/team_members?team=Sales"), schemas.TEAM_MEMBER_LIST),
        (api(sandbox, "GET", "/meeting_types"), schemas.MEETING_TYPE_LIST),
        (api(sandbox, "GET", "/recordings/1001/summary"), schemas.SUMMARY_RESPONSE),
        (api(sandbox, "GET", "/recordings/1001/transcript"), schemas.TRANSCRIPT_RESPONSE),
        (
            api(sandbox, "GET", "/recordings/1001/summary?destination_url=http://127.0.0.1:9/x"),
            schemas.CALLBACK_RESPONSE,
        ),
        (api(sandbox, "POST", "/recordings/7001/download"), schemas.RECORDING_DOWNLOAD),
    ]
    first = api(sandbox, "POST", "/recordings/1001/download")
    checks.append((first, schemas.RECORDING_DOWNLOAD))
    path = f"/recordings/1001/downloads/{first.json()['download_id']}"
    checks += [(api(sandbox, "GET", path), schemas.RECORDING_DOWNLOAD) for _ in range(2)]
    control.add_fault("generation_timeout", match="/recordings/1002/downloads/*")
    failed = api(sandbox, "POST", "/recordings/1002/download").json()["download_id"]
    checks.append(
        (api(sandbox, "GET", f"/recordings/1002/downloads/{failed}"), schemas.RECORDING_DOWNLOAD)
    )
    hook = api(
        sandbox,
        "POST",
        "/webhooks",
        json={
            "destination_url": "http://127.0.0.1:9/hook",
            "triggered_for": ["my_recordings"],
            "include_summary": True,
        },
    )
    checks.append((hook, schemas.WEBHOOK))

    for response, model in checks:
        assert response.status_code in (200, 201, 202), response.text
        jsonschema.validate(response.json(), model)
    statuses = [r.json()["status"] for r, m in checks if m is schemas.RECORDING_DOWNLOAD]
    assert statuses == ["completed", "processing", "processing", "completed", "failed"]
    full = checks[1][0].json()["items"][0]
    assert full["highlights"] and full["transcript"] and full["default_summary"]
    assert checks[0][0].json()["items"][0]["highlights"] is None
    assert api(sandbox, "DELETE", f"/webhooks/{hook.json()['id']}").status_code == 204


# --- downloads --------------------------------------------------------------------------------


def test_audio_only_completes_at_once_and_its_audio_downloads(alice_client, control, tmp_path):
    control.add_meeting(ALICE_KEY, 7002, audio_only=True, media="recording-2.mp4")
    first = alice_client.request_download(7002)

    ready = alice_client.settle_download(first, 7002)
    assert ready is first and first.status == "completed"
    assert (first.media_kind, first.video) == ("audio", None)
    assert first.media.content_type == "audio/mp4"
    done = alice_client.download_video(
        first.media_url, tmp_path / "a.m4a", expected_size=first.media_size
    )
    assert done.path.read_bytes() == control.recording_bytes(7002)
    assert len(download_calls(control, 7002)) == 1  # no poll at all


def test_a_video_completed_in_the_first_answer_needs_no_poll(alice_client, control):
    control.configure(processing_polls=0)
    first = alice_client.request_download(1001)
    assert alice_client.settle_download(first, 1001) is first
    assert first.media_kind == "video"
    assert len(download_calls(control, 1001)) == 1


@pytest.mark.parametrize(
    ("reason", "transient"), [("generation_failed", False), ("generation_timeout", True)]
)
def test_each_failure_reason_reaches_the_owner_in_words(alice_client, control, reason, transient):
    control.add_fault(reason, match="/recordings/1003/downloads/*")
    download_id = alice_client.request_download(1003).download_id
    with pytest.raises(FathomDownloadFailed) as caught:
        alice_client.wait_for_download(1003, download_id, poll_interval=0.05)
    assert caught.value.failure_reason == reason
    assert caught.value.transient is transient
    assert reason in caught.value.reason and "no reason" not in caught.value.reason


def test_a_limited_access_share_is_a_permanent_403_that_says_so(alice_client, control):
    control.add_meeting(ALICE_KEY, 7003, limited_access=True)
    with pytest.raises(FathomNoAccess) as caught:
        alice_client.request_download(7003)
    error = caught.value
    assert (error.status, error.transient, error.kind) == (403, False, "fathom_no_download_access")
    assert "limited access" in error.reason and "recording 7003" in error.reason


def test_a_recording_without_media_is_a_permanent_422_that_says_so(alice_client, control):
    control.add_meeting(ALICE_KEY, 7004, no_media=True)
    with pytest.raises(FathomNoMedia) as caught:
        alice_client.request_download(7004)
    error = caught.value
    assert (error.status, error.transient, error.kind) == (422, False, "fathom_no_media")
    assert "nothing to transfer" in error.reason


def test_signed_urls_live_a_day_by_default_and_an_expired_one_is_transient(
    alice_client, control, tmp_path
):
    control.configure(processing_polls=0)
    first = alice_client.request_download(1001)
    lifetime = first.media.expires_at - datetime.now(UTC)
    assert 23.9 * 3600 < lifetime.total_seconds() <= 24 * 3600

    control.configure(processing_polls=0, signed_url_ttl=0.3)
    short = alice_client.request_download(1001)
    time.sleep(0.5)
    with pytest.raises(FathomDownloadExpired) as caught:
        alice_client.download_video(short.media_url, tmp_path / "v.mp4", expected_size=None)
    assert caught.value.transient is True
    assert not (tmp_path / "v.mp4").exists()


# --- meetings -------------------------------------------------------------------------------


def test_meetings_carry_type_sharing_link_and_highlights(alice_client, control):
    meetings = list(alice_client.iter_meetings(include_highlights=True))
    assert {m.shared_with for m in meetings} <= {
        "no_teams",
        "single_team",
        "multiple_teams",
        "all_teams",
    }
    assert {m.meeting_type for m in meetings} == {"Customer call", "Internal sync", ""}
    assert all(m.meeting_url.startswith("https://") for m in meetings)
    assert all(m.raw["highlights"] for m in meetings)
    assert {m.team for m in meetings} == {"Sales", "Engineering"}


def test_meeting_filters_reach_fathom(alice_client, control):
    external = list(
        alice_client.iter_meetings(calendar_invitees_domains_type="one_or_more_external")
    )
    internal = list(alice_client.iter_meetings(calendar_invitees_domains_type="only_internal"))
    client_domain = list(alice_client.iter_meetings(calendar_invitees_domains=["client.example"]))
    typed = list(alice_client.iter_meetings(meeting_type="Internal sync"))
    unknown_type = list(alice_client.iter_meetings(meeting_type="No such type"))

    assert external and internal and len(external) + len(internal) == 12
    assert {m.recording_id for m in client_domain} == {m.recording_id for m in external}
    assert typed and {m.meeting_type for m in typed} == {"Internal sync"}
    assert unknown_type == []
    queries = [r["query"] for r in control.requests() if r["path"].endswith("/meetings")]
    assert any("calendar_invitees_domains%5B%5D=client.example" in q for q in queries)
    with pytest.raises(FathomRejected) as caught:
        list(alice_client.iter_meetings(calendar_invitees_domains_type="sometimes"))
    assert caught.value.status == 400


def test_teams_members_summary_and_transcript(alice_client, control):
    teams = [t["name"] for t in alice_client.iter_teams()]
    members = list(alice_client.iter_team_members(team="Sales"))
    summary = alice_client.get_summary(1001)
    transcript = alice_client.get_transcript(1001)

    assert teams == ["Engineering", "Sales"]
    assert [m["email"] for m in members] == ["alice@acme.example"]
    assert summary.startswith("## Summary")
    assert transcript and set(transcript[0]) == {"speaker", "text", "timestamp"}
    assert transcript[0]["speaker"] == "Alice Johnson"


def test_webhooks_are_created_and_deleted_per_key(sandbox, control, alice_client):
    created = alice_client.create_webhook(
        "http://127.0.0.1:9/hook", triggered_for=["my_recordings"], include_summary=True
    )
    listed = control.webhooks()
    assert [w["id"] for w in listed] == [created.id]
    assert "secret" not in listed[0] and created.secret.startswith("whsec_")
    with FathomClient("sandbox-key-bob", base_url=sandbox.base_url) as bob:
        bob.delete_webhook(created.id)  # not Bob's: a 404, which counts as gone for him
    assert [w["id"] for w in control.webhooks()] == [created.id]
    alice_client.delete_webhook(created.id)
    assert control.webhooks() == []
    with pytest.raises(FathomRejected) as caught:
        alice_client.create_webhook("http://127.0.0.1:9/hook", triggered_for=["my_recordings"])
    assert caught.value.status == 400  # no include_* true, as Fathom requires
