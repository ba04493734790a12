"""The live-updates socket's fast send path: daphne, Twisted and the OS socket under it.

Everything that knows about daphne's protocol object, Twisted's transport and write
buffer, or the raw socket, so that realtime.consumers reads as the protocol only. One
SocketWriter per socket (SocketWriter.from_send), of the class that fits its server:
RawSocketWriter (daphne over plain TCP, the usual case), TwistedWriter (daphne over TLS),
or SocketWriter itself (another ASGI server: its own send).

Also here, because they reach into daphne, Twisted or autobahn: closing every socket
with 1012 when daphne is told to stop (on_daphne_shutdown, SocketWriter.close_for_restart),
the garbage collector's thresholds (tune_gc_under_daphne) and autobahn's unlogged
debug lines (quiet_autobahn_debug_lines). All are tested in
tests/unit/test_daphne_io.py and measured in bench/notes.md (issue 14).

Why not daphne's own send: through it (handle_reply, autobahn's sendMessage, Twisted's
write buffer and two epoll changes) a message cost ~110 us of CPU at 1,000 sockets; a
frame built once per audience (realtime.hub.websocket_frame) and written straight to the
socket costs ~30 us (docs/benchmarks.md). `write` is on that path once per socket per
message: a plain method, not a coroutine, with no attribute look-up it does not need.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import pprint
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


def _server_send(send: Any) -> Any:
    """The ASGI server's own send, under Channels' session middleware wrapper.

    InstanceSessionWrapper.send only acts on HTTP responses; hub deliveries skip it.
    """
    while hasattr(getattr(send, "__self__", None), "real_send"):
        send = send.__self__.real_send
    return send


def _protocol_of(send: Any) -> Any:
    """daphne's WebSocketProtocol for this socket, or None under another server.

    daphne's ASGI send is functools.partial(server.handle_reply, protocol).
    """
    args = getattr(send, "args", None)
    protocol = args[0] if args else None
    return protocol if hasattr(protocol, "transport") else None


def _raw_socket_of(transport: Any) -> socket.socket | None:
    """The OS socket under a plain-TCP Twisted transport (not TLS, not a test double)."""
    if transport is None:
        return None
    from twisted.internet import tcp

    if isinstance(transport, tcp.Connection) and isinstance(
        getattr(transport, "socket", None), socket.socket
    ):
        return transport.socket
    return None


class SocketWriter:
    """Sends one socket's messages. This base class is for ASGI servers other than
    daphne: it cannot see their buffers, so it reports no backlog and sends the text
    through the server's own ASGI send. `from_send` picks the class for a socket."""

    __slots__ = ("send",)

    def __init__(self, send: Any) -> None:
        self.send = send

    @staticmethod
    def from_send(send: Any, *, sndbuf: int = 0) -> SocketWriter:
        """The writer for the socket behind a consumer's base_send, made once per socket
        after accept. `sndbuf` > 0 sets the kernel's send buffer (SO_SNDBUF) in bytes."""
        server_send = _server_send(send)
        protocol = _protocol_of(server_send)
        if protocol is None or protocol.transport is None:
            return SocketWriter(server_send)
        transport = protocol.transport
        if sndbuf and hasattr(transport, "getHandle"):
            transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        raw_socket = _raw_socket_of(transport)
        if raw_socket is None:
            return TwistedWriter(server_send, protocol, transport)
        return RawSocketWriter(server_send, protocol, transport, raw_socket)

    def backlog(self) -> int:
        """Bytes accepted for this socket but not yet handed to the kernel."""
        return 0

    def write(self, text: str, frame: bytes, backlog: int) -> Awaitable[None] | None:
        """Send one message: `text`, and `frame`, the same text as a server WebSocket frame.

        `backlog` is backlog() as just read (the caller checks it against its limit
        first): a frame goes straight to the socket only when nothing is queued ahead of
        it. Returns what the caller must await, if anything.
        """
        return self.send({"type": "websocket.send", "text": text})

    def abort_later(self, seconds: float) -> None:
        """Drop the connection, and whatever is still buffered for it, in `seconds`."""

    def close_with(self, code: int) -> Awaitable[None] | None:
        """Close with `code`, any code RFC 6455 lets a server send (1012 among them).
        Here, through the server's own ASGI send."""
        return self.send({"type": "websocket.close", "code": code})

    def close_for_restart(self, frame: bytes, code: int) -> Awaitable[None] | None:
        """The server is stopping: close with `code` (`frame`, the same as a close frame).
        Here as close_with."""
        return self.close_with(code)


class TwistedWriter(SocketWriter):
    """daphne over a transport without a plain socket under it (TLS, a test double): the
    prebuilt frame goes to Twisted's write buffer, skipping daphne's and autobahn's
    framing."""

    __slots__ = ("protocol", "transport")

    def __init__(self, send: Any, protocol: Any, transport: Any) -> None:
        super().__init__(send)
        self.protocol = protocol
        self.transport = transport

    def backlog(self) -> int:
        """Bytes written but not yet sent. Twisted buffers them without limit."""
        transport = self.transport
        buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
        return buffered + getattr(transport, "_tempDataLen", 0)

    def write(self, text: str, frame: bytes, backlog: int) -> Awaitable[None] | None:
        protocol = self.protocol
        transport = self.transport
        if protocol.state != protocol.STATE_OPEN or transport.disconnecting:
            return None  # closing: autobahn sends nothing after its close frame either
        transport.write(frame)
        return None

    def abort_later(self, seconds: float) -> None:
        if hasattr(self.transport, "abortConnection"):
            asyncio.get_running_loop().call_later(seconds, self.transport.abortConnection)

    def close_with(self, code: int) -> Awaitable[None] | None:
        """autobahn's closing handshake with `code`, after whatever is still buffered.

        Through sendCloseFrame, not sendClose (and so not daphne's ASGI close, which calls
        it): sendClose refuses every code but 1000 and 3000-4999, 1012 (service restart)
        included, with an exception, and the socket stayed open."""
        protocol = self.protocol
        if protocol.state == protocol.STATE_OPEN and not self.transport.disconnecting:
            protocol.sendCloseFrame(code=code)
        return None

    def close_for_restart(self, frame: bytes, code: int) -> Awaitable[None] | None:
        """close_with; daphne's own shutdown then drops the connection."""
        return self.close_with(code)


class RawSocketWriter(TwistedWriter):
    """daphne over plain TCP: the prebuilt frame goes straight to the OS socket, and only
    what the kernel does not take to Twisted's buffer."""

    __slots__ = ("raw_socket",)

    def __init__(self, send: Any, protocol: Any, transport: Any, raw_socket: socket.socket):
        super().__init__(send, protocol, transport)
        self.raw_socket = raw_socket

    def backlog(self) -> int:
        # A tcp.Connection is a Twisted FileDescriptor, which always has these three:
        # plain attribute reads, cheaper than TwistedWriter's getattr() with defaults.
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def write(self, text: str, frame: bytes, backlog: int) -> Awaitable[None] | None:
        protocol = self.protocol
        transport = self.transport
        if protocol.state != protocol.STATE_OPEN or transport.disconnecting:
            return None  # closing: autobahn sends nothing after its close frame either
        sent = 0
        if backlog == 0:
            # Nothing is queued in Twisted, so writing to the socket first keeps the order;
            # what the kernel does not take goes to Twisted's buffer, as asyncio does.
            try:
                sent = self.raw_socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return None  # the connection is gone; Twisted notices on its next read
        if sent < len(frame):
            transport.write(frame[sent:] if sent else frame)
        return None

    def close_for_restart(self, frame: bytes, code: int) -> Awaitable[None] | None:
        """The close frame straight to the socket, then FIN, and the connection out of
        Twisted's hands, so that daphne's shutdown skips it.

        daphne's own way (cancel the application, then Twisted's connectionLost for each
        connection: autobahn's and daphne's close handling, the access log line, the
        consumer's disconnect) cost ~0.3 ms a socket, 2.3-2.5 s of the stop with 5,000
        open, and the clients only learnt of it when the TCP connection went (1006). The
        client replies with its own close frame, or just closes; the process exits soon
        after and the kernel closes the descriptor. A socket with bytes still buffered in
        Twisted takes the slow way, behind them (a frame must not cut into another)."""
        protocol = self.protocol
        transport = self.transport
        if protocol.state != protocol.STATE_OPEN or transport.disconnecting:
            return None
        if self.backlog() == 0:
            try:
                sent = self.raw_socket.send(frame)
            except OSError:
                sent = -1  # gone, or (unlikely with nothing queued) a full send buffer
            if sent == len(frame):
                transport.reactor.removeReader(transport)
                transport.reactor.removeWriter(transport)
                with contextlib.suppress(OSError):
                    self.raw_socket.shutdown(socket.SHUT_WR)
                protocol.state = protocol.STATE_CLOSED
                return None
            if sent > 0:  # part of the frame went out: the rest must follow it
                transport.write(frame[sent:])
                transport.loseConnection()
                protocol.state = protocol.STATE_CLOSED
                return None
        return super().close_for_restart(frame, code)


def is_closing(writer: SocketWriter | None) -> bool:
    """Under daphne, whether autobahn has begun or finished closing the socket."""
    protocol = getattr(writer, "protocol", None)
    return protocol is not None and protocol.state != protocol.STATE_OPEN


def close_on_bad_frames(writer: SocketWriter, *, max_bytes: int) -> None:
    """Under daphne, have autobahn close a socket that sends a frame it refuses with the
    RFC 6455 code, not by dropping the connection.

    daphne keeps autobahn's failByDrop: invalid UTF-8 in a text frame, a message over its
    size limit or a protocol error drops the TCP connection without a close frame, which a
    client sees as 1006 (a network failure, to retry). With it off they close with 1007,
    1009 and 1002 (docs/protocol.md).
    """
    protocol = getattr(writer, "protocol", None)
    if protocol is None or not hasattr(protocol, "failByDrop"):
        return  # not daphne: the consumer's own checks answer
    protocol.failByDrop = False
    protocol.maxMessagePayloadSize = max_bytes
    protocol.maxFramePayloadSize = max_bytes


# --- daphne's stop ---------------------------------------------------------------------------


def _daphne_reactor() -> Any:
    """Twisted's reactor when this process is daphne's (its asyncio reactor running the
    current event loop); None under another server or in tests without daphne."""
    reactor = sys.modules.get("twisted.internet.reactor")
    loop = getattr(reactor, "_asyncioEventloop", None)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return reactor if loop is running else None


def stop_listening(reactor: Any) -> int:
    """Close the listening TCP ports now: a client reconnecting while this process stops
    is refused at once (and retries for the next daphne) rather than accepted by a server
    that is about to drop it. Returns how many were closed."""
    from twisted.internet import tcp

    ports = [reader for reader in reactor.getReaders() if isinstance(reader, tcp.Port)]
    for port in ports:
        port.stopListening()
    return len(ports)


def exit_without_teardown() -> None:
    """The last step of a daphne that closed its sockets for a restart: run the other
    exit handlers (logging's flush among them), flush stdout and stderr, and end the
    process without the interpreter's teardown.

    Registered with atexit when the stop begins, so it runs after daphne's own shutdown
    and after the database thread has finished its work (concurrent.futures joins its
    threads before atexit runs), first among the exit handlers, which it runs itself.
    What it skips is freeing every object one by one and a close() per socket: with
    5,000 sockets ~1.5 s of the stop (strace, bench/notes.md). Open connections to
    PostgreSQL and Redis are closed by the kernel with the process, as on a crash; no
    transaction is open by then (the thread that runs them has finished)."""
    atexit.unregister(exit_without_teardown)
    try:
        atexit._run_exitfuncs()  # the others, newest first, as the interpreter would
    finally:
        for stream in (sys.stdout, sys.stderr):
            # A closed or broken pipe: nothing more to say anyway.
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def on_daphne_shutdown(close_all: Callable[[], int]) -> bool:
    """Under daphne, call `close_all` as soon as daphne is told to stop (SIGTERM, SIGINT),
    after its listening ports are closed and before daphne cancels the applications and
    Twisted drops every connection. `close_all` returns how many sockets it closed; the
    process then ends without the interpreter's teardown (exit_without_teardown).
    Returns False when this process is not daphne's."""
    reactor = _daphne_reactor()
    if reactor is None:
        return False

    def before_shutdown() -> None:
        try:
            ports = stop_listening(reactor)
            closed = close_all()
        except Exception:  # the stop must go on whatever happens here
            logger.exception("closing the sockets for the restart failed")
            return
        logger.warning(
            "stopping: closed %s listening port(s) and %s socket(s) with 1012", ports, closed
        )
        atexit.register(exit_without_teardown)

    # A "before" trigger added after daphne's own (kill_all_applications) still runs in
    # the same pass, before any application task has seen its cancellation.
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    return True


# --- the garbage collector ----------------------------------------------------------------

# Full collections only after 100 collections of the middle generation (Python's default is
# 10): ~700,000 objects allocated and kept, rather than every ~70,000.
GC_THRESHOLDS = (700, 10, 100)


def tune_gc_under_daphne() -> bool:
    """Under daphne's command line (loading the application), keep the cyclic garbage
    collector's full collections off the path of connecting sockets. Returns whether it
    did.

    Each socket keeps ~60 objects (Twisted's and autobahn's protocol, daphne's scope and
    queue, the ASGI task, the consumer), and Python's default thresholds ran a full
    collection every ~70,000 objects kept, each walking every object of the process, the
    ~300,000 of Django and the other imports included: 7 of them, 1.7 s of the event
    loop (~250 ms each), while 5,000 sockets connected. gc.freeze() moves what the
    start-up made out of the collector's sight, and a full collection comes after
    ~700,000 objects kept instead: none while 5,000 connect, 0.6 s of collections
    in all instead of 2.2 s (bench/notes.md). Garbage in reference cycles is still
    collected, by the young generations' collections or, later, the full ones."""
    # daphne.server (imported by its Django app) installs the reactor in every Django
    # process; daphne.cli only where daphne's command line runs.
    reactor = sys.modules.get("twisted.internet.reactor")
    if "daphne.cli" not in sys.modules or getattr(reactor, "_asyncioEventloop", None) is None:
        return False
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return True


# --- autobahn's handshake ---------------------------------------------------------------------


class _FormattedWhenLogged:
    """`render(value, *args)`, made only when a log line is actually formatted."""

    __slots__ = ("args", "render", "value")

    def __init__(self, render: Callable[..., str], value: Any, args: tuple[Any, ...] = ()):
        self.render = render
        self.value = value
        self.args = args

    def __str__(self) -> str:
        return self.render(self.value, *self.args)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


# autobahn's modules that highlight debug-line arguments (click.style) before the call,
# and the helpers they use only for that (tests/unit/test_daphne_io.py checks it).
AUTOBAHN_HIGHLIGHTING = {
    "autobahn.websocket.protocol": ("hltype", "hlval"),
    "autobahn.twisted.websocket": ("hltype", "hlval"),
}


def _when_logged(render: Callable[..., str]) -> Callable[..., Any]:
    def deferred(value: Any, *args: Any) -> _FormattedWhenLogged:
        return _FormattedWhenLogged(render, value, args)

    deferred.fathomloom_patch = True  # type: ignore[attr-defined]
    return deferred


def quiet_autobahn_debug_lines() -> bool:
    """Stop autobahn formatting arguments for debug lines that are not logged.

    autobahn builds its debug lines' arguments before the call, whether or not the line
    is logged (daphne below verbosity 2 logs none of them): on every connection it
    pretty-prints its ~40 protocol settings (`pformat(configAttrLog)` in
    WebSocketProtocol._connectionMade) and highlights names and values for the terminal
    (`hltype`, `hlval`: click.style) on every connect, data read and send. That was
    4-17% of daphne's time while sockets connect, and ~3% after (bench/notes.md). Here
    autobahn's modules get stand-ins that render the same text when a line is logged:
    - `hltype` and `hlval` of the modules in AUTOBAHN_HIGHLIGHTING, which use them only
      as debug-line arguments;
    - their `pformat` returns a stand-in for the call from _connectionMade only; every
      other caller gets pprint.pformat's string.
    Idempotent; changes nothing and returns False if autobahn is not what this was
    written against."""
    import importlib

    try:
        modules = {name: importlib.import_module(name) for name in AUTOBAHN_HIGHLIGHTING}
        from autobahn import util
        from autobahn.websocket import protocol
    except ImportError:
        return False
    connection_made = getattr(protocol.WebSocketProtocol, "_connectionMade", None)
    code = getattr(connection_made, "__code__", None)
    current = getattr(protocol, "pformat", None)
    patched = getattr(current, "fathomloom_patch", False)
    expected = all(
        getattr(module, helper, None) in (getattr(util, helper, None),)
        or getattr(getattr(module, helper, None), "fathomloom_patch", False)
        for name, module in modules.items()
        for helper in AUTOBAHN_HIGHLIGHTING[name]
    )
    if not expected or code is None or "pformat" not in code.co_names:
        logger.warning("autobahn was not patched: not the version it was written for")
        return False
    if not patched and current is not pprint.pformat:
        logger.warning("autobahn was not patched: its pformat is not pprint's")
        return False
    for name, module in modules.items():
        for helper in AUTOBAHN_HIGHLIGHTING[name]:
            original = getattr(util, helper)
            if getattr(module, helper) is original:
                setattr(module, helper, _when_logged(original))
    if patched:
        return True

    def pformat(value: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and sys._getframe(1).f_code is code:
            return _FormattedWhenLogged(pprint.pformat, value)
        return pprint.pformat(value, *args, **kwargs)

    pformat.fathomloom_patch = True  # type: ignore[attr-defined]
    protocol.pformat = pformat
    return True
