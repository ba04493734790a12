"""The sandbox itself, where tests rely on it behaving like Fathom: limits, ranges, control."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ALICE_KEY, BOB_KEY


def api(sandbox, method: str, path: str, key: str | None = ALICE_KEY, **kwargs) -> httpx.Response:
    headers = {"X-Api-Key": key} if key else {}
    return httpx.request(method, sandbox.base_url + path, headers=headers, timeout=5, **kwargs)


def test_rate_limit_headers_count_down_per_key_then_429(sandbox, control):
    control.configure(rate_limit=3, rate_window=30)
    remaining = []
    for _ in range(3):
        response = api(sandbox, "GET", "/meetings")
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 30
        remaining.append(response.headers["RateLimit-Remaining"])
    refused = api(sandbox, "GET", "/meetings")

    assert remaining == ["2", "1", "0"]
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 30
    # Bob has a window of his own.
    assert api(sandbox, "GET", "/meetings", key=BOB_KEY).status_code == 200


def test_download_requests_have_their_own_lower_limit(sandbox, control):
    control.configure(download_limit=2)
    statuses = [api(sandbox, "POST", "/recordings/1001/download").status_code for _ in range(3)]
    assert statuses == [202, 202, 429]
    assert api(sandbox, "GET", "/meetings").status_code == 200


@pytest.mark.parametrize("key", [None, "sandbox-key-nobody"])
def test_missing_or_unknown_key_is_401(sandbox, control, key):
    assert api(sandbox, "GET", "/meetings", key=key).status_code == 401


def test_signed_video_supports_ranges_and_head(sandbox, control):
    url = signed_url_for(sandbox, ALICE_KEY, 1001)
    original = control.recording_bytes(1001)

    head = httpx.head(url)
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    tail = httpx.get(url, headers={"Range": "bytes=-5"})
    beyond = httpx.get(url, headers={"Range": f"bytes={len(original)}-"})

    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(original)
    assert head.headers["Accept-Ranges"] == "bytes"
    assert part.status_code == 206 and part.content == original[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(original)}"
    assert tail.content == original[-5:]
    assert beyond.status_code == 416


def test_a_made_up_signed_url_is_refused(sandbox, control):
    assert httpx.get(sandbox.root_url + "/signed/made-up-token").status_code == 403


def test_faults_fire_the_given_number_of_times_on_matching_requests_only(sandbox, control):
    control.add_fault("status", match="/recordings/*/download", method="POST", status=503, times=2)
    meetings = api(sandbox, "GET", "/meetings").status_code
    posts = [api(sandbox, "POST", "/recordings/1001/download").status_code for _ in range(3)]
    assert meetings == 200
    assert posts == [503, 503, 202]
    log = control.requests()
    assert [r["fault"] for r in log] == [None, "status", "status", None]
    assert [r["status"] for r in log] == [200, 503, 503, 202]


def test_an_unknown_fault_is_refused(sandbox, control):
    with pytest.raises(httpx.HTTPStatusError):
        control.add_fault("gremlins")


def test_meetings_added_from_tests_are_listed_and_downloadable(sandbox, control):
    control.add_meeting("key-carol", 9001, title="Carol's demo", media="recording-2.mp4")
    listed = api(sandbox, "GET", "/meetings", key="key-carol").json()

    assert [m["title"] for m in listed["items"]] == ["Carol's demo"]
    assert "_media" not in listed["items"][0]
    response = httpx.get(signed_url_for(sandbox, "key-carol", 9001))
    assert response.content == control.recording_bytes(9001)
    assert control.recording(9001)["media"] == "recording-2.mp4"


def signed_url_for(sandbox, key: str, recording_id: int) -> str:
    download = api(sandbox, "POST", f"/recordings/{recording_id}/download", key=key).json()
    path = f"/recordings/{recording_id}/downloads/{download['download_id']}"
    while (status := api(sandbox, "GET", path, key=key).json())["status"] != "completed":
        pass
    return status["video"]["url"]
