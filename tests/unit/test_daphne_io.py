"""realtime.daphne_io: which writer a socket gets, and that frames arrive whole and in
order whether the kernel takes them, Twisted buffers them, or both; the close with 1012
when daphne stops; autobahn's debug lines formatted only when logged."""

from __future__ import annotations

import ast
import asyncio
import functools
import gc
import importlib
import inspect
import pprint
import socket
import sys
import types
from pathlib import Path

import pytest
from twisted.internet import tcp

from realtime import daphne_io
from realtime.consumers import CLOSE_SERVICE_RESTART, CLOSE_SERVICE_RESTART_FRAME
from realtime.daphne_io import RawSocketWriter, SocketWriter, TwistedWriter
from realtime.hub import Hub, websocket_frame
from realtime.queue_feed import Viewer


class FakeReactor:
    """Just enough reactor for a Twisted transport's write buffer."""

    def __init__(self) -> None:
        self.writers: set = set()
        self.readers: set = set()

    def addWriter(self, writer) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer) -> None:
        self.writers.discard(writer)

    def addReader(self, reader) -> None:
        self.readers.add(reader)

    def removeReader(self, reader) -> None:
        self.readers.discard(reader)


class FakeProtocol:
    """daphne's WebSocketProtocol as the writer sees it."""

    STATE_OPEN = 1
    STATE_CLOSING = 2
    STATE_CLOSED = 3

    def __init__(self, transport) -> None:
        self.transport = transport
        self.state = self.STATE_OPEN
        self.close_codes: list[int] = []

    def sendCloseFrame(self, code: int) -> None:  # autobahn's closing handshake, any code
        self.close_codes.append(code)
        self.state = self.STATE_CLOSING


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


# --- the close when daphne stops -----------------------------------------------------------


def test_a_restart_closes_with_1012_straight_to_the_socket_and_lets_go_of_it(tcp_pair):
    transport, theirs = tcp_pair
    transport.reactor.addReader(transport)
    protocol = FakeProtocol(transport)
    writer = SocketWriter.from_send(daphne_send(protocol))
    assert CLOSE_SERVICE_RESTART_FRAME == b"\x88\x02\x03\xf4"  # final close frame, 1012
    assert writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART) is None
    # The close frame, then the end of the stream (FIN): the client sees 1012.
    theirs.settimeout(1)
    assert theirs.recv(16) == CLOSE_SERVICE_RESTART_FRAME
    assert theirs.recv(16) == b""
    # Out of Twisted's hands (its shutdown skips it) and closed for the hub's deliveries.
    assert transport not in transport.reactor.readers and not transport.reactor.writers
    assert protocol.state == protocol.STATE_CLOSED and not protocol.close_codes
    assert write(writer, "late") is None
    assert writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART) is None


def test_a_restart_close_waits_behind_bytes_still_buffered(tcp_pair):
    transport, _theirs = tcp_pair
    protocol = FakeProtocol(transport)
    writer = SocketWriter.from_send(daphne_send(protocol))
    for n in range(100):
        write(writer, f"{n:04d}" + "x" * 3000)
    assert writer.backlog() > 0
    writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART)
    # autobahn's closing handshake, queued behind the buffered frames (none cut into).
    assert protocol.close_codes == [CLOSE_SERVICE_RESTART]


def test_a_restart_close_under_tls_is_autobahns_closing_handshake():
    class OtherTransport:
        disconnecting = False

    protocol = FakeProtocol(OtherTransport())
    writer = SocketWriter.from_send(daphne_send(protocol))
    assert type(writer) is TwistedWriter
    writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART)
    writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART)
    assert protocol.close_codes == [CLOSE_SERVICE_RESTART]  # once


def test_autobahns_public_close_refuses_1012_so_the_writer_does_not_use_it():
    """Why close_with goes to sendCloseFrame: sendClose (daphne's ASGI close calls it)
    raises for 1012, and the socket stayed open (a log that went back, under TLS a stop)."""
    from autobahn.websocket.protocol import WebSocketProtocol

    with pytest.raises(Exception, match="invalid close code 1012"):
        WebSocketProtocol.sendClose(object(), code=CLOSE_SERVICE_RESTART)


def test_a_restart_close_under_another_server_is_its_asgi_close():
    sent: list[dict] = []

    async def server_send(message: dict) -> None:
        sent.append(message)

    writer = SocketWriter.from_send(SessionWrapper(server_send).send)
    asyncio.run(writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART))
    assert sent == [{"type": "websocket.close", "code": 1012}]


class Closing:
    """A hub subscriber that records its close for the restart."""

    def __init__(self, viewer: Viewer, fails: bool = False) -> None:
        self.viewer = viewer
        self.fails = fails
        self.closed = 0

    def close_for_restart(self):
        self.closed += 1
        if self.fails:
            raise OSError("broken")


def test_the_hub_closes_every_socket_once_for_a_restart_and_forgets_them():
    hub = Hub()
    sockets = [Closing(Viewer(user_id=n % 3 or None)) for n in range(9)]
    sockets.append(Closing(Viewer(user_id=7, is_staff=True), fails=True))
    for subscriber in sockets:
        hub.add(subscriber)
    assert hub.close_for_restart() == 10
    assert [s.closed for s in sockets] == [1] * 10  # a broken one does not stop the rest
    assert not (hub.subscribers or hub.by_viewer or hub.viewers_of_user or hub.staff_viewers)
    assert hub.close_for_restart() == 0


def test_outside_daphne_nothing_is_hooked_to_a_stop():
    async def hook() -> bool:
        return daphne_io.on_daphne_shutdown(lambda: 0)

    # daphne's Django app installs its reactor here too, but it runs no loop of ours.
    assert asyncio.run(hook()) is False
    assert daphne_io.on_daphne_shutdown(lambda: 0) is False  # no loop at all


def test_the_gc_is_tuned_under_daphnes_command_line_only(monkeypatch):
    thresholds = gc.get_threshold()
    monkeypatch.delitem(sys.modules, "daphne.cli", raising=False)
    assert daphne_io.tune_gc_under_daphne() is False
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
    monkeypatch.setitem(sys.modules, "daphne.cli", types.ModuleType("daphne.cli"))
    try:
        assert daphne_io.tune_gc_under_daphne() is True
        assert gc.get_threshold() == daphne_io.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_the_stop_closes_the_listening_ports_first():
    class Port(tcp.Port):
        def __init__(self) -> None:
            self.stopped = False

        def stopListening(self):
            self.stopped = True

    class Reactor:
        def __init__(self, readers) -> None:
            self.readers = readers

        def getReaders(self):
            return self.readers

    port = Port()
    assert daphne_io.stop_listening(Reactor([object(), port])) == 1
    assert port.stopped


# --- autobahn's debug lines ---------------------------------------------------------------


def test_autobahns_debug_lines_are_formatted_only_when_logged():
    from autobahn import util
    from autobahn.websocket import protocol

    assert daphne_io.quiet_autobahn_debug_lines()
    assert daphne_io.quiet_autobahn_debug_lines()  # idempotent
    for name, helpers in daphne_io.AUTOBAHN_HIGHLIGHTING.items():
        module = importlib.import_module(name)
        for helper in helpers:
            stand_in = getattr(module, helper)(protocol.WebSocketProtocol.sendData)
            assert not isinstance(stand_in, str)
            original = getattr(util, helper)(protocol.WebSocketProtocol.sendData)
            assert str(stand_in) == original == f"{stand_in}"  # the same text when logged

    # pformat: a stand-in for _connectionMade's debug line only, a string for anyone else.
    settings = [("autoPingTimeout", 30, "WebSocketServerFactory")] * 40

    class Probe:
        pass

    namespace = dict(vars(protocol))
    source = "def _connectionMade(self):\n    return pformat(self.settings)\n"
    exec(compile(source, inspect.getsourcefile(protocol), "exec"), namespace)
    assert protocol.pformat(settings) == pprint.pformat(settings)
    assert isinstance(protocol.pformat(settings), str)
    code = protocol.WebSocketProtocol._connectionMade.__code__
    assert "pformat" in code.co_names  # the call the stand-in is for is still there
    probe = Probe()
    probe.settings = settings
    assert isinstance(namespace["_connectionMade"](probe), str)  # another function's call


def test_autobahn_uses_the_highlighting_helpers_only_for_log_lines():
    """The stand-ins are not strings: autobahn must use them only as arguments of its
    log calls (self.log.debug(..., func=hltype(...))). Checked in its source, so that a
    new autobahn that uses them otherwise fails here rather than in production."""
    for name, helpers in daphne_io.AUTOBAHN_HIGHLIGHTING.items():
        tree = ast.parse(inspect.getsource(importlib.import_module(name)))
        in_log_calls: set[int] = set()
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"debug", "trace", "info", "warn", "error", "failure"}
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "log"
            ):
                in_log_calls.update(id(keyword.value) for keyword in node.keywords)
        uses = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in helpers
        ]
        assert uses, f"{name} no longer uses {helpers}: the patch is not needed there"
        for node in uses:
            assert id(node) in in_log_calls, f"{name}:{node.lineno} uses {node.func.id} otherwise"


def test_the_procfile_runs_daphne_as_the_tests_and_the_benchmarks_do():
    """Production's flags (docs/deployment.md): through realtime.serve (a port a new daphne
    can share before the old one stops), no access log, a listen backlog of 1,024."""
    from devtools.processes import DAPHNE_BACKLOG, daphne_options

    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    options = daphne_options("127.0.0.1", "$WEB_PORT")
    assert options[-2:] == ["-v", "0"] and f"--backlog {DAPHNE_BACKLOG}" in " ".join(options)
    assert web.startswith("web: python -m realtime.serve " + " ".join(options) + " ")
