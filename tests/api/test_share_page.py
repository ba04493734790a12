"""The share link as a page (issue 15): people get an HTML page with the player, what
Fathom knows of the meeting, and unfurl metadata; players still get the file, with
ranges; owners choose whether the link is open to anyone or to signed-in users only."""

from __future__ import annotations

import html
import os
import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from queue_app.integrations.uploaders import get_uploader
from queue_app.services import line, transfers
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}
SUMMARY = "## Summary\n\nBudget agreed; **owners** named.\n\n- Ship the beta\n- Hire <b>two</b>\n"
TRANSCRIPT = [
    {
        "speaker": {"display_name": "Dana Lee"},
        "text": "Welcome, everyone.",
        "timestamp": "00:00:05",
    },
    {"speaker": {"display_name": "Sam"}, "text": "Numbers first.", "timestamp": "00:01:10"},
    {"speaker": "broken", "text": None, "timestamp": "??"},
]


@pytest.fixture
def shared(settings, tmp_path, alice, make_meeting):
    """A meeting of alice's, transferred: its share URL and the meeting."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_BASE_URL = "https://queue.example.com"
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    video = tmp_path / "in.mp4"
    video.write_bytes(os.urandom(50_000))
    meeting = make_meeting(alice, "Budget <review> & plan")
    meeting.summary = SUMMARY
    meeting.duration_seconds = 3720
    meeting.recording_start_time = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    meeting.raw = {"recorded_by": {"name": "Dana Lee", "email": "dana@example.com"}}
    meeting.raw["transcript"] = TRANSCRIPT
    meeting.save()
    entry = line.entry_enqueue(meeting=meeting)
    transfers.transfer_claim_next(worker="w")
    url = get_uploader().upload(video, title=str(meeting), description="").share_url
    transfers.transfer_complete(entry_id=entry.pk, worker="w", result_url=url)
    return url, meeting, video.read_bytes()


def path_of(url: str) -> str:
    return url.removeprefix("https://queue.example.com")


def test_a_person_gets_a_page_with_the_meeting(client, shared):
    url, _, _ = shared
    page = client.get(path_of(url), **BROWSER)

    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert '<h1 id="share-title">Budget &lt;review&gt; &amp; plan</h1>' in text
    assert "30 November 2026" in text and "1 h 02 min" in text and "Dana Lee" in text
    # The summary as text, never as markup.
    assert "Budget agreed; owners named." in text and "Hire &lt;b&gt;two&lt;/b&gt;" in text
    assert "<b>two</b>" not in text
    # The transcript, in time order, each line with its time; a malformed one is skipped.
    assert text.count('class="link-button cue-time"') == 2
    cues = re.findall(r'<li data-start="([^"]+)">.*?cue-text">([^<]*)<', text, re.S)
    assert cues == [("5", "Welcome, everyone."), ("70", "Numbers first.")]
    media = path_of(url) + "/media"
    assert f'src="{media}"' in text
    assert f'href="{media}?download=1"' in text


def test_the_page_unfurls(client, shared):
    url, _, _ = shared
    text = client.get(path_of(url), **BROWSER).content.decode()

    def meta(name: str) -> str:
        match = re.search(rf'<meta property="{name}" content="([^"]*)"', text)
        assert match, name
        return html.unescape(match.group(1))

    assert meta("og:title") == "Budget <review> & plan"
    assert meta("og:url") == url
    assert meta("og:image") == "https://queue.example.com/static/queue_app/share-card.png"
    assert meta("og:description").startswith("Budget agreed; owners named.")
    assert meta("og:video") == url + "/media"
    oembed = re.search(r'type="application/json\+oembed" href="([^"]*)"', text).group(1)
    answer = client.get(path_of(html.unescape(oembed)))
    assert answer.status_code == 200
    body = answer.json()
    assert body["version"] == "1.0" and body["type"] == "link"
    assert body["title"] == "Budget <review> & plan"
    assert body["author_name"] == "Dana Lee"
    assert body["thumbnail_url"].endswith("/static/queue_app/share-card.png")


def test_oembed_refuses_what_it_may_not_tell(client, shared, alice):
    url, meeting, _ = shared
    assert client.get("/oembed", {"url": url, "format": "xml"}).status_code == 501
    assert (
        client.get("/oembed", {"url": "https://elsewhere.example/share/" + "a" * 43}).status_code
        == 404
    )
    assert client.get("/oembed", {"url": url.replace("/share/", "/nope/")}).status_code == 404
    assert client.get("/oembed", {"url": "https://evil.example" + path_of(url)}).status_code == 404
    meeting.share_access = "signed_in"
    meeting.save()
    refused = client.get("/oembed", {"url": url})
    assert refused.status_code == 404 and "Budget" not in refused.content.decode()


def test_link_unfurlers_get_the_page_even_without_asking_for_html(client, shared):
    url, _, _ = shared
    for agent in ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Discordbot/2.0"):
        page = client.get(path_of(url), HTTP_ACCEPT="*/*", HTTP_USER_AGENT=agent)
        assert page["Content-Type"].startswith("text/html"), agent
        assert b'property="og:title"' in page.content
    player = client.get(path_of(url), HTTP_ACCEPT="*/*", HTTP_USER_AGENT="VLC/3.0.20 LibVLC/3.0.20")
    assert player["Content-Type"] == "video/mp4"


def test_players_still_get_the_file_with_ranges(client, shared):
    url, _, data = shared
    whole = client.get(path_of(url))  # no text/html: a player
    assert whole["Content-Type"] == "video/mp4"
    assert b"".join(whole.streaming_content) == data
    part = client.get(path_of(url) + "/media", HTTP_RANGE="bytes=100-199", **BROWSER)
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert b"".join(part.streaming_content) == data[100:200]
    download = client.get(path_of(url) + "/media?download=1")
    assert download["Content-Disposition"] == 'attachment; filename="budget-review-plan.mp4"'


def test_signed_in_only_links_need_a_sign_in(client, shared, bob, alice, client_for):
    url, meeting, data = shared
    owner = client_for(alice)
    answer = owner.put(f"/api/meetings/{meeting.pk}/share", {"access": "signed_in"}, format="json")
    assert answer.status_code == 200 and answer.json() == {"access": "signed_in"}

    page = client.get(path_of(url), **BROWSER)
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/?next=")
    assert client.get(path_of(url)).status_code == 403
    assert client.get(path_of(url) + "/media").status_code == 403
    signed_in = Client()
    signed_in.force_login(bob)
    assert signed_in.get(path_of(url), **BROWSER).status_code == 200
    assert b"".join(signed_in.get(path_of(url) + "/media").streaming_content) == data
    # Only the owner sees the choice on the page.
    assert "Who can open this page" not in signed_in.get(path_of(url), **BROWSER).content.decode()
    assert "Who can open this page" in owner.get(path_of(url), **BROWSER).content.decode()

    assert owner.put(
        f"/api/meetings/{meeting.pk}/share", {"access": "anyone"}, format="json"
    ).json() == {"access": "anyone"}
    assert client.get(path_of(url), **BROWSER).status_code == 200


def test_only_the_owner_chooses_and_only_known_choices(client_for, shared, bob, alice):
    _, meeting, _ = shared
    assert_error(
        client_for(bob).put(f"/api/meetings/{meeting.pk}/share", {"access": "signed_in"}),
        404,
        "not_found",
    )
    assert_error(
        client_for(alice).put(
            f"/api/meetings/{meeting.pk}/share", {"access": "public"}, format="json"
        ),
        400,
        "invalid",
    )
    meeting.refresh_from_db()
    assert meeting.share_access == "anyone"


def test_unknown_links_are_404(client, shared):
    assert client.get("/share/" + "b" * 43, **BROWSER).status_code == 404
    assert client.get("/share/" + "b" * 43 + "/media").status_code == 404
