"""The Fathom client against a real sandbox process: pages, errors by kind, downloads."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fathom_sandbox.testing import SandboxControl, SandboxProcess
from queue_app.integrations.fathom import (
    FathomClient,
    FathomDownloadExpired,
    FathomDownloadFailed,
    FathomDownloadIncomplete,
    FathomError,
    FathomMalformedResponse,
    FathomRateLimited,
    FathomRejected,
    FathomUnavailable,
)

from .conftest import ALICE_KEY

ALICE_IDS = set(range(1001, 1013))


def api_calls(control: SandboxControl, path_end: str = "") -> list[dict]:
    return [
        r
        for r in control.requests()
        if r["path"].startswith("/external/v1") and r["path"].endswith(path_end)
    ]


def completed_download(client: FathomClient, recording_id: int):
    download_id = client.request_download(recording_id).download_id
    return client.wait_for_download(recording_id, download_id, poll_interval=0.05)


# --- meetings -------------------------------------------------------------------------------


def test_iter_meetings_follows_next_cursor_to_the_last_page(alice_client, control):
    meetings = list(alice_client.iter_meetings())

    assert [m.recording_id for m in meetings] == sorted(ALICE_IDS, reverse=True)
    # 12 meetings at the sandbox's default page of 5: three pages, each asked for once.
    calls = api_calls(control, "/meetings")
    assert len(calls) == 3
    assert "cursor=" not in calls[0]["query"]
    assert all("cursor=" in call["query"] for call in calls[1:])
    first = meetings[0]
    assert first.title and first.share_url.startswith("https://")
    assert first.recording_start_time < first.recording_end_time
    assert first.created_at.tzinfo is not None
    assert first.raw["recording_id"] == first.recording_id


def test_no_undocumented_page_size_is_sent_and_paging_follows_fathoms_size(alice_client, control):
    control.configure(page_size=4)
    meetings = list(alice_client.iter_meetings())

    assert {m.recording_id for m in meetings} == ALICE_IDS
    calls = api_calls(control, "/meetings")
    assert len(calls) == 3  # 12 meetings at Fathom's page of 4
    assert not any("limit" in call["query"] for call in calls)


def test_include_flags_reach_fathom_and_fill_the_meeting(alice_client, control):
    bare = next(alice_client.iter_meetings())
    full = next(
        alice_client.iter_meetings(
            include_summary=True,
            include_transcript=True,
            include_action_items=True,
            include_crm_matches=True,
        )
    )

    assert bare.summary == "" and bare.raw["transcript"] is None
    assert full.summary.startswith("## Summary")
    assert full.raw["transcript"] and full.raw["action_items"]
    assert full.raw["crm_matches"] is not None


def test_filters_reach_fathom(alice_client, control):
    sales = list(alice_client.iter_meetings(teams=["Sales"]))
    recent = list(alice_client.iter_meetings(created_after=datetime(2025, 3, 10, tzinfo=UTC)))
    older = list(alice_client.iter_meetings(created_before=datetime(2025, 3, 6, tzinfo=UTC)))
    nobody = list(alice_client.iter_meetings(recorded_by=["someone-else@acme.example"]))
    alice = list(alice_client.iter_meetings(recorded_by=["alice@acme.example"]))

    assert len(sales) == 6 and {m.raw["recorded_by"]["team"] for m in sales} == {"Sales"}
    assert recent and all(m.created_at > datetime(2025, 3, 10, tzinfo=UTC) for m in recent)
    assert older and all(m.created_at < datetime(2025, 3, 6, tzinfo=UTC) for m in older)
    assert len(recent) + len(older) < 12
    assert nobody == []
    assert len(alice) == 12


def test_each_key_sees_only_its_own_meetings(sandbox, control):
    with FathomClient("sandbox-key-bob", base_url=sandbox.base_url) as bob:
        ids = {m.recording_id for m in bob.iter_meetings()}
    assert ids == set(range(2001, 2008))


# --- errors ---------------------------------------------------------------------------------


def test_check_key_accepts_a_good_key_with_one_call(alice_client, control):
    alice_client.check_key()
    calls = api_calls(control)
    assert len(calls) == 1 and "limit" not in calls[0]["query"]


def test_check_key_with_a_bad_key_says_the_key_was_refused(sandbox, control):
    with (
        FathomClient("not-a-real-key", base_url=sandbox.base_url) as client,
        pytest.raises(FathomError) as caught,
    ):
        client.check_key()
    error = caught.value
    assert error.status == 401
    assert error.transient is False
    assert "refused the API key" in error.reason


def test_unknown_recording_is_a_permanent_404_with_a_clear_reason(alice_client, control):
    with pytest.raises(FathomRejected) as caught:
        alice_client.request_download(999999)
    assert caught.value.status == 404
    assert caught.value.transient is False
    assert caught.value.reason == "Fathom has no recording 999999 (404)"


def test_another_users_recording_is_not_found(alice_client, control):
    with pytest.raises(FathomRejected) as caught:
        alice_client.request_download(2001)  # bob's
    assert caught.value.status == 404


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_client_errors_are_permanent(alice_client, control, status):
    control.add_fault("status", match="/recordings/1001/download", method="POST", status=status)
    with pytest.raises(FathomRejected) as caught:
        alice_client.request_download(1001)
    assert caught.value.status == status
    assert caught.value.transient is False
    assert "recording 1001" in caught.value.reason


def test_429_gives_retry_after_and_the_client_does_not_retry_by_itself(alice_client, control):
    control.add_fault("429", match="/meetings", retry_after=2)

    with pytest.raises(FathomRateLimited) as caught:
        list(alice_client.iter_meetings())

    assert caught.value.retry_after == 2
    assert caught.value.transient is True
    assert caught.value.status == 429
    assert len(api_calls(control)) == 1


def test_429_without_retry_after_falls_back_to_ratelimit_reset(alice_client, control):
    control.add_fault("429", match="/meetings", retry_after=None, reset=7)
    with pytest.raises(FathomRateLimited) as caught:
        alice_client.check_key()
    assert caught.value.retry_after == 7


def test_the_sandbox_rate_limit_itself_yields_a_429_with_retry_after(alice_client, control):
    control.configure(rate_limit=3, rate_window=30)
    for _ in range(3):
        alice_client.check_key()
    with pytest.raises(FathomRateLimited) as caught:
        alice_client.check_key()
    assert 0 < caught.value.retry_after <= 30


def test_two_5xx_are_transient_and_the_third_call_succeeds(alice_client, control):
    control.add_fault("status", match="/recordings/1001/download", status=503, times=2)

    for _ in range(2):
        with pytest.raises(FathomUnavailable) as caught:
            alice_client.request_download(1001)
        assert caught.value.transient is True
        assert caught.value.status == 503
        assert "503" in caught.value.reason
    assert alice_client.request_download(1001)


def test_a_timeout_is_transient(sandbox, control):
    control.add_fault("slow", match="/meetings", seconds=2)
    with (
        FathomClient(ALICE_KEY, base_url=sandbox.base_url, timeout=0.5) as client,
        pytest.raises(FathomUnavailable) as caught,
    ):
        client.check_key()
    assert caught.value.transient is True
    assert "did not answer" in caught.value.reason


def test_a_dropped_connection_is_transient(alice_client, control):
    control.add_fault("reset", match="/meetings")
    with pytest.raises(FathomError) as caught:
        alice_client.check_key()
    assert caught.value.transient is True


def test_malformed_json_is_permanent_with_a_clear_reason(alice_client, control):
    control.add_fault("malformed_json", match="/meetings")
    with pytest.raises(FathomMalformedResponse) as caught:
        list(alice_client.iter_meetings())
    assert caught.value.transient is False
    assert caught.value.reason == "Fathom sent malformed JSON while listing meetings (200)"


def test_wrong_types_in_meetings_are_permanent_with_a_clear_reason(alice_client, control):
    control.add_fault("wrong_types", match="/meetings")
    with pytest.raises(FathomMalformedResponse) as caught:
        list(alice_client.iter_meetings())
    assert caught.value.transient is False
    assert "recording_id is str, not an integer" in caught.value.reason


def test_wrong_types_in_a_download_are_permanent(alice_client, control):
    control.add_fault("wrong_types", match="/recordings/1001/download", method="POST")
    with pytest.raises(FathomMalformedResponse) as caught:
        alice_client.request_download(1001)
    assert "status" in caught.value.reason

    download_id = alice_client.request_download(1001).download_id
    control.add_fault("wrong_types", match="/recordings/1001/downloads/*")
    with pytest.raises(FathomMalformedResponse) as caught:
        alice_client.get_download(1001, download_id)
    assert caught.value.transient is False
    assert "status" in caught.value.reason


# --- downloads ------------------------------------------------------------------------------


def test_wait_for_download_polls_until_completed(alice_client, control):
    control.configure(processing_polls=2)
    download_id = alice_client.request_download(1001).download_id
    seen = []

    status = alice_client.wait_for_download(
        1001, download_id, poll_interval=0.05, on_poll=lambda s: seen.append(s.status)
    )

    assert seen == ["processing", "processing", "completed"]
    assert status.download_id == download_id
    assert status.media_url and status.media_size == control.recording(1001)["size"]


def test_a_failed_download_is_permanent_and_says_why(alice_client, control):
    control.add_fault("generation_failed", match="/recordings/1003/downloads/*")
    download_id = alice_client.request_download(1003).download_id
    with pytest.raises(FathomDownloadFailed) as caught:
        alice_client.wait_for_download(1003, download_id, poll_interval=0.05)
    assert caught.value.transient is False
    assert "recording 1003" in caught.value.reason
    assert "generation_failed" in caught.value.reason


def test_an_expired_download_is_transient(alice_client, control):
    control.add_fault("expired", match="/recordings/1001/downloads/*")
    download_id = alice_client.request_download(1001).download_id
    with pytest.raises(FathomDownloadExpired) as caught:
        alice_client.wait_for_download(1001, download_id, poll_interval=0.05)
    assert caught.value.transient is True


def test_waiting_too_long_is_transient(alice_client, control):
    control.configure(processing_polls=1000)
    download_id = alice_client.request_download(1001).download_id
    with pytest.raises(FathomUnavailable) as caught:
        alice_client.wait_for_download(1001, download_id, poll_interval=0.05, timeout=0.3)
    assert caught.value.transient is True
    assert "still preparing" in caught.value.reason


def test_a_full_download_is_byte_identical_and_never_sends_the_key(alice_client, control, tmp_path):
    status = completed_download(alice_client, 1002)
    dest = tmp_path / "video.mp4"
    progress = []

    result = alice_client.download_video(
        status.media_url,
        dest,
        expected_size=status.media_size,
        on_progress=lambda done, total: progress.append((done, total)),
        chunk_size=4096,
    )

    original = control.recording_bytes(1002)
    assert dest.read_bytes() == original
    assert result.path == dest
    assert result.size == len(original) == status.media_size
    assert (
        result.sha256 == hashlib.sha256(original).hexdigest() == control.recording(1002)["sha256"]
    )
    assert progress[-1] == (len(original), len(original)) and len(progress) > 1
    assert dest.read_bytes()[4:8] == b"ftyp"  # a real MP4
    signed = [r for r in control.requests() if r["path"].startswith("/signed/")]
    assert len(signed) == 1 and signed[0]["has_api_key"] is False
    assert all(r["has_api_key"] for r in api_calls(control))


def test_a_truncated_download_is_transient_and_leaves_no_partial_file(
    alice_client, control, tmp_path
):
    status = completed_download(alice_client, 1001)
    control.add_fault("truncate", match="/signed/*", bytes=1000)
    dest = tmp_path / "video.mp4"

    with pytest.raises(FathomDownloadIncomplete) as caught:
        alice_client.download_video(status.media_url, dest, expected_size=status.media_size)

    assert caught.value.transient is True
    assert f"after 1000 of {status.media_size} bytes" in caught.value.reason
    assert list(tmp_path.iterdir()) == []
    # The same signed URL works on the next try.
    result = alice_client.download_video(status.media_url, dest, expected_size=status.media_size)
    assert result.sha256 == control.recording(1001)["sha256"]


def test_a_size_other_than_announced_is_transient_and_leaves_no_file(
    alice_client, control, tmp_path
):
    status = completed_download(alice_client, 1001)
    dest = tmp_path / "video.mp4"
    with pytest.raises(FathomDownloadIncomplete):
        alice_client.download_video(status.media_url, dest, expected_size=status.media_size + 1)
    assert list(tmp_path.iterdir()) == []


def test_an_expired_signed_url_is_transient(alice_client, control, tmp_path):
    control.configure(signed_url_ttl=0)
    status = completed_download(alice_client, 1001)
    with pytest.raises(FathomDownloadExpired) as caught:
        alice_client.download_video(
            status.media_url, tmp_path / "v.mp4", expected_size=status.media_size
        )
    assert caught.value.transient is True
    assert caught.value.status == 403
    assert list(tmp_path.iterdir()) == []


def test_a_5xx_on_the_signed_url_is_transient(alice_client, control, tmp_path):
    status = completed_download(alice_client, 1001)
    control.add_fault("status", match="/signed/*", status=502)
    with pytest.raises(FathomUnavailable):
        alice_client.download_video(
            status.media_url, tmp_path / "v.mp4", expected_size=status.media_size
        )
    assert list(tmp_path.iterdir()) == []


# --- the key stays secret -------------------------------------------------------------------


def test_the_api_key_never_appears_in_errors_reprs_or_logs(
    sandbox: SandboxProcess, control: SandboxControl, tmp_path: Path, caplog
):
    secret = "fathom-secret-key-7Qz9Xw"
    control.add_meeting(secret, 7001, media="recording-1.mp4")
    caplog.set_level(logging.DEBUG)
    errors: list[FathomError] = []

    def expect_error(call) -> None:
        try:
            call()
        except FathomError as error:
            errors.append(error)
            logging.getLogger("test").exception("transfer failed: %s", error)
        else:
            raise AssertionError("expected a FathomError")

    with FathomClient(secret, base_url=sandbox.base_url, timeout=0.5) as client:
        faults = [
            {"fault": "status", "status": 422, "body": {"error": f"bad key {secret}"}},
            {"fault": "status", "status": 503},
            {"fault": "429", "retry_after": 1},
            {"fault": "malformed_json"},
            {"fault": "wrong_types"},
            {"fault": "slow", "seconds": 1.5},
            {"fault": "reset"},
        ]
        for fault in faults:
            control.add_fault(match="/meetings", **fault)
            expect_error(lambda: list(client.iter_meetings()))
        expect_error(lambda: client.request_download(999))
        status = completed_download(client, 7001)
        control.add_fault("truncate", match="/signed/*", bytes=100)
        expect_error(
            lambda: client.download_video(
                status.media_url, tmp_path / "v.mp4", expected_size=status.media_size
            )
        )
        texts = [repr(client), str(status), repr(status), status.media_url]
    with FathomClient(secret + "-wrong", base_url=sandbox.base_url) as wrong:
        expect_error(wrong.check_key)

    assert len(errors) == len(faults) + 3
    texts += [text for e in errors for text in (str(e), repr(e), e.reason, str(e.args))]
    assert not [text for text in texts if secret in text]
    assert caplog.records and secret not in caplog.text
    assert secret not in str(control.requests())
