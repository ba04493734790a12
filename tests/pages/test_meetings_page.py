"""My meetings as the server renders it: one page of the library at a time, the filters
in the URL (so reload, back and links keep them), bad filters said and dropped."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from queue_app.models import FathomAccount, Meeting
from queue_app.services import line
from queue_app.views import MEETINGS_PAGE_SIZE

pytestmark = pytest.mark.django_db
DASH = "\N{EN DASH}"


@pytest.fixture(autouse=True)
def _no_dispatch(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False


@pytest.fixture
def alices_library(alice, bob):
    """60 meetings of alice's, one a day back from 30 November (newest: "Call 60"); bob's."""
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    Meeting.objects.bulk_create(
        Meeting(
            owner=alice,
            recording_id=n,
            title=f"{'Sales' if n % 3 == 0 else 'Call'} {n}",
            recording_start_time=start - timedelta(days=60 - n),
        )
        for n in range(1, 61)
    )
    Meeting.objects.create(owner=bob, recording_id=1, title="Sales 0 of bob")
    return Meeting.objects.filter(owner=alice)


def page_of(user, query: str = "") -> tuple[str, list[str]]:
    client = Client()
    client.force_login(user)
    response = client.get(f"/{query}")
    assert response.status_code == 200
    html = response.content.decode()
    return html, re.findall(r'<h3 id="meeting-\d+-title">([^<]+)</h3>', html)


def config_of(html: str) -> dict:
    match = re.search(r'<script id="client-config" type="application/json">(.*?)</script>', html)
    return json.loads(match.group(1))


def test_a_page_holds_25_meetings_newest_first_with_links_to_the_others(alice, alices_library):
    html, titles = page_of(alice)
    assert MEETINGS_PAGE_SIZE == 25
    assert titles == [f"{'Sales' if n % 3 == 0 else 'Call'} {n}" for n in range(60, 35, -1)]
    assert f"Meetings 1{DASH}25 of 60" in html and "Page 1 of 3" in html
    assert 'href="?page=2"' in html and 'rel="prev"' not in html

    html, titles = page_of(alice, "?page=3")
    assert len(titles) == 10 and titles[-1] == "Call 1"
    assert (
        f"Meetings 51{DASH}60 of 60" in html
        and 'href="?page=2"' in html
        and 'rel="next"' not in html
    )
    # A page past the last shows the last; nonsense shows the first.
    assert page_of(alice, "?page=99")[1] == titles
    assert page_of(alice, "?page=x")[1][0] == "Sales 60"


def test_search_and_filters_come_from_the_url_and_stay_in_the_page_links(alice, alices_library):
    line.entry_enqueue(meeting=alices_library.get(title="Sales 57"))
    html, titles = page_of(alice, "?search=sales")
    assert titles[:3] == ["Sales 60", "Sales 57", "Sales 54"] and len(titles) == 20
    assert "20 meetings matching" in html
    assert 'value="sales"' in html  # the search box keeps what was searched
    assert config_of(html)["filters"] == {"search": "sales"}
    assert config_of(html)["matching_count"] == 20

    html, titles = page_of(alice, "?search=call&state=not_queued&page=2")
    assert f"Meetings 26{DASH}40 of 40 matching" in html
    assert 'href="?search=call&amp;state=not_queued"' in html  # back to page 1, filters kept

    html, titles = page_of(alice, "?state=waiting")
    assert titles == ["Sales 57"]
    # The page's latest entries are those of its meetings only.
    assert list(json.loads(re.search(r'id="latest-entries"[^>]*>(.*?)</script>', html)[1])) == [
        str(alices_library.get(title="Sales 57").pk)
    ]

    html, titles = page_of(alice, "?recorded_from=2026-11-28&recorded_to=2026-11-29")
    assert titles == ["Call 59", "Call 58"]


def test_bad_filters_are_said_and_dropped(alice, alices_library):
    html, titles = page_of(alice, "?state=lost&search=call&recorded_from=soon")
    assert "Ignored the state:" in html and "Ignored the recorded from:" in html
    assert config_of(html)["filters"] == {"search": "call"}
    assert len(titles) == 25 and all(t.startswith("Call") for t in titles)


def test_nothing_matching_says_so_and_offers_to_clear(alice, alices_library):
    html, titles = page_of(alice, "?search=nothing+like+this")
    assert titles == [] and "No meetings match." in html and "Clear the filters" in html


def test_only_your_own_meetings(bob, alices_library):
    html, titles = page_of(bob, "?search=sales")
    assert titles == ["Sales 0 of bob"]
    assert config_of(html)["matching_count"] == 1


def test_the_team_filter_offers_the_teams_of_your_meetings(alice, alices_library):
    alices_library.filter(title__startswith="Sales").update(team="Sales")
    alices_library.filter(title="Call 1").update(team="Support")
    html, titles = page_of(alice, "?team=Support")
    assert titles == ["Call 1"]
    assert re.findall(r'<option value="(\w+)"', html.split('id="filter-team"')[1])[:2] == [
        "Sales",
        "Support",
    ]


def test_the_page_says_whether_fathom_took_the_webhook(alice, bob):
    FathomAccount.objects.create(
        user=alice, api_key_encrypted="x", api_key_last4="abcd", fathom_webhook_id="wh_1"
    )
    refusal = "Fathom did not register the webhook (no webhook rights). Add it by hand."
    FathomAccount.objects.create(
        user=bob, api_key_encrypted="x", api_key_last4="wxyz", webhook_error=refusal
    )
    registered, _ = page_of(alice)
    assert "the webhook was registered in your Fathom account" in registered
    assert "The webhook, by hand (not needed)" in registered
    refused, _ = page_of(bob)
    assert refusal in refused and "was registered" not in refused
    assert "Let Fathom announce new meetings (webhook)" in refused
