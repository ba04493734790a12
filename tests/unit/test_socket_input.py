"""Hostile input on the live-updates socket (issue 11): never a 1011 or an HTTP 500, never
a traceback; a documented error or close code instead, and the socket otherwise unharmed.

Through the whole WebSocket stack (origin check, cookies, session and token auth, the
consumer) as daphne runs it, with Channels' WebsocketCommunicator in place of daphne and
a stand-in for the process's hub (delivery is not what these tests are about). What only
daphne and autobahn decide (frame sizes, UTF-8, the handshake's HTTP status) is tested
against real daphne in tests/integration/test_socket_fuzz.py.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from realtime import consumers, queue_feed
from realtime.consumers import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db

HOST = "127.0.0.1:8000"
PAGE = f"http://{HOST}"  # the origin of the pages this server serves
CLOSE_RATE_LIMITED = 4029  # docs/protocol.md


class StubHub:
    """What QueueConsumer asks of the hub, without a channel layer or a task."""

    last_seq = 0

    def __init__(self) -> None:
        self.sockets: set[Any] = set()

    async def register(self, socket: Any) -> None:
        self.sockets.add(socket)

    def unregister(self, socket: Any) -> None:
        self.sockets.discard(socket)

    async def snapshot(self, requester: Any = None) -> dict[str, Any]:
        return await database_sync_to_async(queue_feed.queue_snapshot)()

    async def snapshot_text(self, requester: Any, *, reset: bool = False) -> tuple[int, str]:
        snapshot = queue_feed.snapshot_for_viewer(await self.snapshot(requester), requester.viewer)
        if reset:
            snapshot["reset"] = True
        return snapshot["seq"], json.dumps(snapshot)

    async def replay(self, requester: Any, last_seq: int, limit: int) -> list | None:
        _, events = await database_sync_to_async(queue_feed.events_to_replay)(last_seq, limit)
        return events

    def event_text(self, message: dict[str, Any], viewer: Any) -> str:
        return json.dumps(queue_feed.event_for_viewer(message, viewer))

    def follow_log(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def hub(monkeypatch) -> StubHub:
    stub = StubHub()
    monkeypatch.setattr(consumers, "get_hub", lambda: stub)
    return stub


@pytest.fixture(autouse=True)
def one_connection(monkeypatch):
    """Channels closes "old" database connections around each database_sync_to_async call
    and consumer handler; here that is the connection holding the test's transaction."""

    async def nothing() -> None:
        pass

    monkeypatch.setattr("channels.db.close_old_connections", lambda: None)
    monkeypatch.setattr("channels.consumer.aclose_old_connections", nothing)


@pytest.fixture(autouse=True)
def errors_are_failures(caplog):
    """Every test here: nothing logged as an error, no traceback."""
    caplog.set_level(logging.DEBUG)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


@pytest.fixture
def token(alice) -> str:
    return Token.objects.create(user=alice).key


def headers(origin: str | None = PAGE, host: str = HOST, cookie: bytes | None = None):
    pairs = [(b"host", host.encode())]
    if origin is not None:
        pairs.append((b"origin", origin.encode("latin-1")))
    if cookie is not None:
        pairs.append((b"cookie", cookie))
    return pairs


def application():
    from fathomloom.asgi import application

    return application


class Client:
    """One socket: its frames as JSON, and how it ended."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv(self, timeout: float = 2) -> dict[str, Any]:
        output = await self.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return {"closed": output.get("code")}
        return json.loads(output["text"])

    async def ping(self) -> dict[str, Any]:
        await self.send('{"type": "ping"}')
        return await self.recv()

    async def done(self) -> None:
        await self.communicator.disconnect()


async def handshake(
    path: str, header_list: list | None = None, scheme: str | None = None
) -> tuple[bool, Client]:
    """(accepted, client): whether the handshake got past the origin check. A refused
    handshake is a close before accept, which daphne answers with HTTP 403."""
    communicator = WebsocketCommunicator(
        application(), path, headers=headers() if header_list is None else header_list
    )
    if scheme is not None:
        communicator.scope["scheme"] = scheme
    accepted, _ = await communicator.connect()
    return accepted, Client(communicator)


async def open_socket(path: str) -> Client:
    """An accepted, authenticated socket that has read its snapshot."""
    accepted, client = await handshake(path)
    assert accepted
    assert (await client.recv())["type"] == "QueueSnapshot"
    return client


async def origin_check_passes(path: str, header_list: list, scheme: str | None = None) -> bool:
    accepted, client = await handshake(path, header_list, scheme)
    await client.done()
    return accepted


def run(coroutine_function, *args):
    # async_to_sync: the middleware's and the consumer's database reads run in this
    # thread, in the test's transaction.
    return async_to_sync(coroutine_function)(*args)


# --- 1. deeply nested JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 30_000 + "]" * 30_000,  # within 64 KB: json.loads raised RecursionError
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"type": "resume", "last_seq": ' + "[" * 20_000 + "]" * 20_000 + "}",
    ],
    ids=["arrays", "objects", "inside-a-message"],
)
def test_deeply_nested_json_is_an_error_and_the_socket_stays(token, frame):
    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        await client.send(frame)
        answer = await client.recv()
        assert answer["type"] == "error" and answer["code"] == "invalid_json", answer
        assert await client.ping() == {"type": "pong"}
        await client.done()

    run(scenario)


def test_nesting_over_the_frame_limit_is_too_large_not_a_crash(token):
    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        await client.send("[" * 100_000 + "]" * 100_000)
        assert (await client.recv())["code"] == "frame_too_large"
        assert await client.ping() == {"type": "pong"}
        await client.done()

    run(scenario)


# --- 2. last_seq: ASCII digits only ---------------------------------------------------------

# Unicode digits that str.isdigit() accepts: superscript two, circled one, Arabic-Indic
# twelve, fullwidth twelve, double-struck one.
UNICODE_DIGITS = ["\u00b2", "\u2460", "\u0661\u0662", "\uff11\uff12", "\U0001d7d9"]
NOT_ASCII_DIGITS = [*UNICODE_DIGITS, "-1", "+1", " 1", "1.0", "0x10", "1e3", "9" * 30]


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
def test_last_seq_in_the_query_must_be_ascii_digits(token, value):
    from urllib.parse import quote

    async def scenario() -> None:
        client = await open_socket_after_error(
            f"/queue_updates?token={token}&last_seq={quote(value)}"
        )
        assert await client.ping() == {"type": "pong"}
        await client.done()

    async def open_socket_after_error(path: str) -> Client:
        accepted, client = await handshake(path)
        assert accepted
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == "invalid_last_seq", error
        # Then a snapshot, as for a socket that asked for no resume.
        assert (await client.recv())["type"] == "QueueSnapshot"
        return client

    run(scenario)


@pytest.mark.parametrize("value", [*NOT_ASCII_DIGITS, True, None, 1.5, -1, 2**63, [], {}])
def test_last_seq_in_a_resume_must_be_a_whole_number(token, value):
    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        await client.send(json.dumps({"type": "resume", "last_seq": value}))
        answer = await client.recv()
        assert answer["type"] == "error" and answer["code"] == "invalid_last_seq", answer
        assert await client.ping() == {"type": "pong"}
        await client.done()

    run(scenario)


def test_ascii_digits_still_resume(token):
    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        await client.send(json.dumps({"type": "resume", "last_seq": "0"}))
        assert await client.ping() == {"type": "pong"}  # nothing to replay, no error
        await client.done()

    run(scenario)


# --- 5. floods ------------------------------------------------------------------------------


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_gets_one_error_then_the_close(token, monkeypatch):
    clock = FrozenClock()
    monkeypatch.setattr(consumers, "monotonic", clock)
    burst = consumers.RATE_BURST

    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        for _ in range(burst):  # the burst is allowed
            assert await client.ping() == {"type": "pong"}
        # One over: an error, once.
        answer = await client.ping()
        assert answer["type"] == "error" and answer["code"] == "rate_limited", answer
        # Going on: dropped without a word, until it has sent a burst's worth too many.
        for _ in range(burst - 1):
            await client.send('{"type": "ping"}')
        assert await client.communicator.receive_nothing(0.1)
        await client.send('{"type": "ping"}')
        assert await client.recv() == {"closed": CLOSE_RATE_LIMITED}
        await client.done()

    run(scenario)


def test_a_client_that_slows_down_is_served_again(token, monkeypatch):
    clock = FrozenClock()
    monkeypatch.setattr(consumers, "monotonic", clock)
    burst = consumers.RATE_BURST

    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        for _ in range(burst):
            await client.ping()
        assert (await client.ping())["code"] == "rate_limited"
        clock.now += 1.5 / consumers.RATE_PER_SECOND  # one message's worth, and a half
        assert await client.ping() == {"type": "pong"}
        clock.now += burst / consumers.RATE_PER_SECOND  # quiet long enough: a clean slate
        for _ in range(burst):
            assert await client.ping() == {"type": "pong"}
        assert (await client.ping())["code"] == "rate_limited"  # warned again, not closed
        await client.done()

    run(scenario)


def test_ten_thousand_pings_in_a_row_are_cut_short(token):
    async def scenario() -> int:
        client = await open_socket(f"/queue_updates?token={token}")
        for _ in range(10_000):
            await client.send('{"type": "ping"}')
        pongs = 0
        while True:
            answer = await client.recv()
            if answer == {"type": "pong"}:
                pongs += 1
            elif answer.get("closed"):
                assert answer["closed"] == CLOSE_RATE_LIMITED
                break
        await client.done()
        return pongs

    # The burst, and what the rate allows in the time the flood took (well under a second
    # here); nowhere near 10,000.
    assert run(scenario) < 200


# --- 6. junk credentials ---------------------------------------------------------------------

JUNK_TOKENS = ["a%00b", "%00" * 40, "x" * 5000, "%E2%91%A0", "%C3%A9" * 40, "%ff%fe", "a b"]


@pytest.mark.parametrize("junk", JUNK_TOKENS)
def test_a_junk_token_is_refused_with_4401_without_a_lookup(
    junk, django_assert_num_queries, settings
):
    settings.REALTIME_PUBLIC_FEED = False

    async def scenario() -> int:
        accepted, client = await handshake(f"/queue_updates?token={junk}")
        assert accepted
        closed = await client.recv()
        await client.done()
        return closed["closed"]

    # No query: PostgreSQL refuses a NUL in a string parameter (DataError, an HTTP 500 at
    # the handshake), and a token of the wrong shape cannot name anything anyway.
    with django_assert_num_queries(0):
        assert run(scenario) == CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize(
    "cookie", [b"sessionid=abcdefgh\x00ij", b"sessionid=" + b"\xff" * 40, b"sessionid=a b c d e"]
)
def test_a_junk_session_cookie_is_no_session(cookie, django_assert_num_queries, settings):
    settings.REALTIME_PUBLIC_FEED = False

    async def scenario() -> int:
        accepted, client = await handshake("/queue_updates", headers(cookie=cookie))
        assert accepted
        closed = await client.recv()
        await client.done()
        return closed["closed"]

    with django_assert_num_queries(0):
        assert run(scenario) == CLOSE_UNAUTHENTICATED


# --- 7. Origin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port: another origin
        "https://127.0.0.1",
        "https://127.0.0.1:8000",  # another scheme
        "http://localhost:8000",  # an allowed host, but not this page's
        "http://evil.example",
        "http://127.0.0.1:8000.evil.example",
        "null",
        "",
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:99999",
        "http://[::1",  # urlsplit raises on this one
        "http://",
        "http://user@127.0.0.1:8000",
        "http://127.0.0.1:8000/path",
        "file://",
    ],
)
def test_a_foreign_origin_is_refused_at_the_handshake(origin, token):
    assert not run(origin_check_passes, f"/queue_updates?token={token}", headers(origin=origin))


def test_the_pages_own_origin_is_accepted(token):
    async def scenario() -> None:
        client = await open_socket(f"/queue_updates?token={token}")
        await client.done()

    run(scenario)


@pytest.mark.parametrize(
    ("host", "origin", "scheme"),
    [
        ("localhost", "http://localhost", None),  # default ports on both sides
        ("localhost:80", "http://localhost", None),
        ("LocalHost:8000", "http://localhost:8000", None),
        ("[::1]:8000", "http://[::1]:8000", None),
        ("localhost", "https://localhost", "wss"),  # served over TLS
        ("localhost:8443", "https://localhost:8443", "wss"),
    ],
)
def test_same_origin_compares_scheme_host_and_port(host, origin, scheme, token):
    assert run(
        origin_check_passes,
        f"/queue_updates?token={token}",
        headers(origin=origin, host=host),
        scheme,
    )


def test_an_http_page_cannot_open_a_socket_served_over_tls(token):
    assert not run(
        origin_check_passes,
        f"/queue_updates?token={token}",
        headers(origin="http://localhost"),
        "wss",
    )


@pytest.mark.parametrize(
    ("origin", "expected"), [("https://localhost", True), ("http://localhost", False)]
)
def test_behind_a_tls_proxy_its_header_makes_the_origin_https(origin, expected, token, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    pairs = [*headers(origin=origin, host="localhost"), (b"x-forwarded-proto", b"https")]
    assert run(origin_check_passes, f"/queue_updates?token={token}", pairs) is expected


@pytest.mark.parametrize("host", ["[::1", "", "127.0.0.1:notaport", "a b"])
def test_a_junk_host_header_is_no_origin_of_ours(host, token):
    pairs = headers(origin=f"http://{host}", host=host)
    assert not run(origin_check_passes, f"/queue_updates?token={token}", pairs)


def test_a_host_not_allowed_is_no_origin_of_ours(token):
    # DNS rebinding: evil.example resolving to this server; its page is same-origin with
    # the socket as far as the browser knows, but ALLOWED_HOSTS does not name it.
    assert not run(
        origin_check_passes,
        f"/queue_updates?token={token}",
        headers(origin="http://evil.example:8000", host="evil.example:8000"),
    )


@pytest.mark.parametrize(
    ("trusted", "origin", "expected"),
    [
        (["https://queue.example.com"], "https://queue.example.com", True),
        (["https://queue.example.com"], "http://queue.example.com", False),
        (["https://queue.example.com"], "https://queue.example.com:8443", False),
        (["https://*.example.com"], "https://queue.example.com", True),
        (["https://*.example.com"], "https://example.com.evil.example", False),
    ],
)
def test_behind_a_proxy_csrf_trusted_origins_are_accepted(
    trusted, origin, expected, token, settings
):
    settings.CSRF_TRUSTED_ORIGINS = trusted
    # The proxy passes the request on to 127.0.0.1:8000 with its own Host.
    path = f"/queue_updates?token={token}"
    assert run(origin_check_passes, path, headers(origin=origin)) is expected


def test_a_script_with_a_token_and_no_origin_is_accepted(token):
    async def scenario() -> None:
        accepted, client = await handshake(f"/queue_updates?token={token}", headers(origin=None))
        assert accepted
        assert (await client.recv())["type"] == "QueueSnapshot"
        await client.done()

    run(scenario)


def test_no_origin_and_no_token_is_refused_at_the_handshake(alice, client):
    # A session cookie without an Origin: browsers always send one, so this is not a
    # page of ours; refused before the cookie is looked at.
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    assert not run(origin_check_passes, "/queue_updates", headers(origin=None, cookie=cookie))


def test_a_session_socket_from_the_page_is_accepted(alice, client):
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        accepted, socket = await handshake("/queue_updates", headers(cookie=cookie))
        assert accepted
        assert (await socket.recv())["type"] == "QueueSnapshot"
        await socket.done()

    run(scenario)
