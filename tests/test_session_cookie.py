"""A session cookie of the wrong shape (a NUL, non-ASCII, too long) is no session: the page
answers as for an anonymous visitor, never with a 500 (PostgreSQL refuses NUL in a query)."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("junk", ["abc\x00def", "é" * 40, "x" * 5000, "a b"])
@pytest.mark.parametrize("path", ["/", "/api/queue", "/admin/"])
def test_a_junk_session_cookie_is_no_session(path, junk, caplog):
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = junk
    response = client.get(path)
    assert response.status_code in (302, 401, 403), response.status_code
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_real_session_still_works(client, alice):
    client.force_login(alice)
    assert client.get("/").status_code == 200
