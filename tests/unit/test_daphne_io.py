"""realtime.daphne_io: which writer a socket gets, and that frames arrive whole and in
order whether the kernel takes them, Twisted buffers them, or both."""

from __future__ import annotations

import asyncio
import functools
import socket

import pytest
from twisted.internet import tcp

from realtime.daphne_io import RawSocketWriter, SocketWriter, TwistedWriter
from realtime.hub import websocket_frame


class FakeReactor:
    """Just enough reactor for a Twisted transport's write buffer."""

    def __init__(self) -> None:
        self.writers: set = set()

    def addWriter(self, writer) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer) -> None:
        self.writers.discard(writer)


class FakeProtocol:
    """daphne's WebSocketProtocol as the writer sees it."""

    STATE_OPEN = 1
    STATE_CLOSING = 2

    def __init__(self, transport) -> None:
        self.transport = transport
        self.state = self.STATE_OPEN


class SessionWrapper:
    """Channels' InstanceSessionWrapper: its send hides the server's as real_send."""

    def __init__(self, real_send) -> None:
        self.real_send = real_send

    async def send(self, message) -> None:
        await self.real_send(message)


def daphne_send(protocol):
    """daphne's ASGI send, as a consumer's base_send sees it."""

    def handle_reply(protocol, message) -> None:
        raise AssertionError("the fast path never calls daphne's send")

    return SessionWrapper(functools.partial(handle_reply, protocol)).send


@pytest.fixture
def tcp_pair():
    """A Twisted TCP transport over one end of a socket pair, and the other end."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = tcp.Connection(ours, None, FakeReactor())
    transport.connected = 1
    yield transport, theirs
    ours.close()
    theirs.close()


def received(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def write(writer: SocketWriter, text: str):
    return writer.write(text, websocket_frame(text), writer.backlog())


def test_another_asgi_server_gets_the_text_through_its_own_send():
    sent: list[dict] = []

    async def server_send(message: dict) -> None:
        sent.append(message)

    writer = SocketWriter.from_send(SessionWrapper(server_send).send, sndbuf=65536)
    assert type(writer) is SocketWriter and writer.backlog() == 0
    asyncio.run(write(writer, '{"type": "pong"}'))
    assert sent == [{"type": "websocket.send", "text": '{"type": "pong"}'}]
    writer.abort_later(0)  # nothing to abort: the server's own business


def test_plain_tcp_writes_straight_to_the_socket(tcp_pair):
    transport, theirs = tcp_pair
    writer = SocketWriter.from_send(daphne_send(FakeProtocol(transport)))
    assert type(writer) is RawSocketWriter and writer.raw_socket is transport.socket
    assert write(writer, "hello") is None
    assert received(theirs) == websocket_frame("hello")
    assert writer.backlog() == 0 and not transport.reactor.writers  # Twisted not involved


def test_what_the_kernel_does_not_take_is_buffered_and_later_frames_queue_behind_it(tcp_pair):
    transport, theirs = tcp_pair
    writer = SocketWriter.from_send(daphne_send(FakeProtocol(transport)))
    texts = [f"{n:04d}" + "x" * 3000 for n in range(200)]
    for text in texts:
        write(writer, text)
    assert writer.backlog() > 0 and transport in transport.reactor.writers
    got = b""
    while transport.reactor.writers or writer.backlog():
        got += received(theirs)
        transport.doWrite()
    got += received(theirs)
    assert got == b"".join(websocket_frame(t) for t in texts)  # whole and in order


def test_the_backlog_counts_every_byte_twisted_holds(tcp_pair):
    transport, _theirs = tcp_pair
    writer = SocketWriter.from_send(daphne_send(FakeProtocol(transport)))
    transport.dataBuffer, transport.offset = b"x" * 100, 30
    transport.write(b"y" * 5)
    assert writer.backlog() == 75


def test_nothing_is_written_once_the_socket_is_closing_or_gone(tcp_pair):
    transport, theirs = tcp_pair
    protocol = FakeProtocol(transport)
    writer = SocketWriter.from_send(daphne_send(protocol))
    protocol.state = protocol.STATE_CLOSING
    write(writer, "late")
    protocol.state = protocol.STATE_OPEN
    transport.disconnecting = True
    write(writer, "later")
    assert received(theirs) == b"" and writer.backlog() == 0
    transport.disconnecting = False
    theirs.close()
    assert write(writer, "to nobody") is None  # EPIPE: no raise, nothing buffered
    assert writer.backlog() == 0


def test_tls_and_other_transports_go_through_twisteds_write():
    class OtherTransport:  # TLSMemoryBIOProtocol, say: no socket, no dataBuffer
        disconnecting = False

        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.aborted = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def abortConnection(self) -> None:
            self.aborted = True

    transport = OtherTransport()
    writer = SocketWriter.from_send(daphne_send(FakeProtocol(transport)))
    assert type(writer) is TwistedWriter and writer.backlog() == 0
    write(writer, "hi")
    assert transport.written == [websocket_frame("hi")]

    async def abort() -> None:
        writer.abort_later(0)
        await asyncio.sleep(0.01)

    asyncio.run(abort())
    assert transport.aborted


def test_sndbuf_sets_the_kernels_send_buffer(tcp_pair):
    transport, _theirs = tcp_pair
    SocketWriter.from_send(daphne_send(FakeProtocol(transport)), sndbuf=64 * 1024)
    # Linux doubles what it is given, for its own bookkeeping.
    assert transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 64 * 1024
