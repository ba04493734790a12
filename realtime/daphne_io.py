"""The live-updates socket's fast send path: daphne, Twisted and the OS socket under it.

Everything that knows about daphne's protocol object, Twisted's transport and write
buffer, or the raw socket, so that realtime.consumers reads as the protocol only. One
SocketWriter per socket (SocketWriter.from_send), of the class that fits its server:
RawSocketWriter (daphne over plain TCP, the usual case), TwistedWriter (daphne over TLS),
or SocketWriter itself (another ASGI server: its own send).

Why not daphne's own send: through it (handle_reply, autobahn's sendMessage, Twisted's
write buffer and two epoll changes) a message cost ~110 us of CPU at 1,000 sockets; a
frame built once per audience (realtime.hub.websocket_frame) and written straight to the
socket costs ~30 us (docs/benchmarks.md). `write` is on that path once per socket per
message: a plain method, not a coroutine, with no attribute look-up it does not need.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any


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
