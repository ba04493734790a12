"""The WebSocket at /queue_updates: a snapshot, then every queue event, redacted per viewer.

Nothing reaches this consumer through a channel of its own (it has none): the process's
hub (realtime.hub) calls `deliver()` with each queue event already encoded for this
viewer's audience, `deliver_update()` with ProgressUpdates for its owner and staff, and
`revoke()` when the user's access ends. Close codes are documented in docs/protocol.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from time import monotonic
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import metrics
from realtime.auth import UNAVAILABLE_ERRORS, query_params
from realtime.daphne_io import SocketWriter, close_on_bad_frames, is_closing
from realtime.hub import get_hub, websocket_frame
from realtime.queue_feed import Viewer

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_SERVICE_RESTART = 1012
# A server's close frame with code 1012 and no reason (RFC 6455 5.5.1): unmasked, final.
CLOSE_SERVICE_RESTART_FRAME = bytes((0x88, 2)) + CLOSE_SERVICE_RESTART.to_bytes(2, "big")
CLOSE_RATE_LIMITED = 4029
MAX_FRAME_BYTES = 64 * 1024
# Under daphne, autobahn refuses a longer message from its header, before reading it into
# memory, and closes with 1009; up to this it is read and gets frame_too_large, the socket
# staying open (docs/protocol.md). daphne's own default is 1 MiB.
MAX_READ_FRAME_BYTES = 2 * MAX_FRAME_BYTES
# Messages from a client: a token bucket per socket. A client sends a ping now and then
# and a resume after a gap; this is far above that, and bounds what one socket can make
# the server do (a resume reads the database).
RATE_PER_SECOND = 20.0
RATE_BURST = 50
# A resume that misses more events than this gets a fresh snapshot instead: cheaper to
# send and to apply.
MAX_REPLAY_EVENTS = 1000
# Events held for a socket still reading its snapshot or replay.
MAX_PENDING_EVENTS = 5000
SLOW_ABORT_SECONDS = 2.0
# Handlers that run without Channels' aclose_old_connections(), a hop to the database
# thread before every handler: about half of a stock consumer's 0.5-0.9 ms per message
# (measured before the hub; docs/benchmarks.md), and one hop per socket more at connect
# and disconnect, in the one thread a burst of connecting sockets waits on
# (bench/notes.md). No handler touches the database itself: what reads it (a resume,
# the hub's snapshot) goes through database_sync_to_async, which closes stale
# connections in the thread that uses them, before and after.
HANDLERS_WITHOUT_DB_HOUSEKEEPING = frozenset(
    {"websocket_receive", "websocket_connect", "websocket_disconnect"}
)


class QueueConsumer(AsyncWebsocketConsumer):
    # No channel layer by this alias: no channel, receive loop or queue per socket.
    # Everything from other processes arrives through the hub.
    channel_layer_alias = "none"
    # Set once the hub delivers to this socket; a refused socket never registers.
    registered = False
    # The rate limit's bucket (class defaults: a full bucket at the first message) and the
    # messages dropped since the bucket was last full.
    tokens = float(RATE_BURST)
    tokens_at = float("-inf")
    dropped = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """AsyncConsumer.__call__ for a consumer without a channel layer: no look-up of
        one per socket (Channels raises and catches a KeyError for an alias it does not
        know: ~15% of daphne's time at connect, bench/notes.md), and the client's messages
        read in a loop rather than through a task per message."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        name = get_handler_name(message)
        if name in HANDLERS_WITHOUT_DB_HOUSEKEEPING:
            await getattr(self, name)(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        self.ready = False
        self.closing = False
        self.pending: list[tuple[int, str]] = []
        self.last_seq = 0
        if self.scope.get("unavailable"):  # Redis or the database down at authentication
            await self._refuse(CLOSE_TRY_AGAIN_LATER)
            return
        user = self.scope.get("user")
        params = query_params(self.scope)
        authenticated = user is not None and user.is_authenticated
        if not authenticated and not settings.REALTIME_PUBLIC_FEED:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        if "user_id" in params and (not authenticated or params["user_id"] != str(user.pk)):
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.viewer = Viewer.of(user)
        await self.accept()
        self.writer = SocketWriter.from_send(self.base_send, sndbuf=settings.REALTIME_SOCKET_SNDBUF)
        close_on_bad_frames(self.writer, max_bytes=MAX_READ_FRAME_BYTES)
        self.max_backlog = settings.REALTIME_MAX_BACKLOG_BYTES
        try:
            await get_hub().register(self)
        except TimeoutError:
            self.closing = True
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        self.registered = True
        last_seq = None
        if "last_seq" in params:
            last_seq = self._parse_seq(params["last_seq"])
            if last_seq is None:
                await self._error("invalid_last_seq", "last_seq must be a whole number >= 0.")
        await self._start_stream_or_close(last_seq)

    async def _start_stream_or_close(self, last_seq: int | None) -> None:
        """_start_stream, or close with 1013 when the database cannot be read: the client
        reconnects with its backoff and resumes from its last seq."""
        try:
            await self._start_stream(last_seq)
        except UNAVAILABLE_ERRORS as exc:
            logger.warning("socket stream unavailable: %s", type(exc).__name__)
            self.closing = True
            get_hub().unregister(self)
            await self.close(code=CLOSE_TRY_AGAIN_LATER)

    async def _refuse(self, code: int) -> None:
        # Accept first: a close before accept is a bare HTTP 403 and loses the code.
        self.closing = True  # and ignore anything the client sends meanwhile
        await self.accept()
        await self.close(code=code)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' websocket_disconnect without its group discards (this consumer has no
        groups) and its aclose_old_connections(), a hop to the database thread per
        socket when a burst of clients goes away (a restart): nothing here touches the
        database."""
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if self.registered:  # not a refused socket, nor one the hub could not take
            get_hub().unregister(self)

    # --- the event stream ------------------------------------------------------------------

    async def _start_stream(self, last_seq: int | None) -> None:
        """Send a snapshot or the events after `last_seq`, then what arrived meanwhile."""
        self.ready = False  # the hub's deliveries wait in self.pending until we are done
        hub = get_hub()
        events = None
        if last_seq is not None:
            events = await hub.replay(self, last_seq, MAX_REPLAY_EVENTS)
        if events is None:
            self.last_seq, text = await hub.snapshot_text(self, reset=last_seq is not None)
            await self._send_in_stream(text)
        else:
            self.last_seq = last_seq
            for message in events:
                self.last_seq = message["seq"]
                await self._send_in_stream(hub.event_text(message, self.viewer))
        while self.pending:
            seq, text = self.pending.pop(0)
            if seq > self.last_seq:
                self.last_seq = seq
                await self._send_in_stream(text)
        self.ready = True  # no await between the emptiness check and this line

    async def _send_in_stream(self, text: str) -> None:
        """A snapshot or a replayed event, through the socket's writer as the hub's
        deliveries go (behind whatever is buffered, the handshake's response included):
        under daphne that skips its send and autobahn's framing, ~0.1 ms a message, once
        per socket that connects or resumes."""
        writer = self.writer
        waiting = writer.write(text, websocket_frame(text), writer.backlog())
        if waiting is not None:
            await waiting

    def deliver(self, seq: int, text: str, frame: bytes) -> Awaitable[None] | None:
        """Called by the hub with this viewer's copy of event `seq`, as text and as a frame.

        A plain method, not a coroutine, and no ASGI send: under daphne the prebuilt frame
        goes straight to the socket (realtime.daphne_io). Through daphne's send
        (handle_reply, autobahn's sendMessage, Twisted's write buffer and two epoll
        changes) a message cost ~110 us of CPU at 1,000 sockets; this way ~30 us
        (docs/benchmarks.md).
        """
        if self.closing:
            return None
        if not self.ready:
            self.pending.append((seq, text))
            if len(self.pending) > MAX_PENDING_EVENTS:
                return self._close_too_slow()
            return None
        if seq <= self.last_seq:
            return None
        self.last_seq = seq
        # Inline here and in deliver_update(): a helper would be one more call per
        # socket-message.
        writer = self.writer
        backlog = writer.backlog()
        if backlog > self.max_backlog:
            return self._close_too_slow()
        return writer.write(text, frame, backlog)

    def deliver_update(self, text: str, frame: bytes) -> Awaitable[None] | None:
        """A ProgressUpdate for this viewer. Dropped while the snapshot or a replay is
        being sent: progress is ephemeral, and the snapshot holds the latest stored."""
        if self.closing or not self.ready:
            return None
        writer = self.writer
        backlog = writer.backlog()
        if backlog > self.max_backlog:
            return self._close_too_slow()
        return writer.write(text, frame, backlog)

    def revoke(self, credential: str | None) -> Awaitable[None] | None:
        """The user's access ended: close if this socket used `credential` (or any)."""
        if self.closing or credential not in (None, self.scope.get("credential")):
            return None
        self.closing = True
        return self.close(code=CLOSE_UNAUTHENTICATED)

    def reset(self) -> Awaitable[None] | None:
        """The event log went back (a restored database): this client's state is from the
        old log. Closing makes it resume, and a resume past the log's end gets a fresh
        snapshot with reset: true."""
        if self.closing:
            return None
        self.closing = True
        metrics.closed(CLOSE_SERVICE_RESTART)
        # Not Channels' close: under daphne it goes to autobahn's sendClose, which refuses
        # 1012 (realtime.daphne_io, SocketWriter.close_with).
        return self.writer.close_with(CLOSE_SERVICE_RESTART)

    def close_for_restart(self) -> Awaitable[None] | None:
        """The server is stopping (the hub calls this from daphne's shutdown): close with
        1012 at once, the frame straight to the socket under daphne
        (realtime.daphne_io), so that the client resumes from the next server."""
        if self.closing:
            return None
        self.closing = True
        self.registered = False  # the hub has let go of every socket already
        metrics.closed(CLOSE_SERVICE_RESTART)
        return self.writer.close_for_restart(CLOSE_SERVICE_RESTART_FRAME, CLOSE_SERVICE_RESTART)

    async def _close_too_slow(self) -> None:
        self.closing = True
        get_hub().unregister(self)
        logger.info("closing a socket that stopped reading (last seq %s)", self.last_seq)
        await self.close(code=CLOSE_TOO_SLOW)
        # A client that does not read will not read the close frame either: drop the
        # connection, and with it the buffered bytes, shortly after.
        self.writer.abort_later(SLOW_ABORT_SECONDS)

    # --- messages from the client ----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if self._over_rate():
            await self._rate_limited()
            return
        if text_data is None:
            await self._error("invalid_frame", "Send JSON text frames.")
            return
        if len(text_data) > MAX_FRAME_BYTES // 4 and len(text_data.encode()) > MAX_FRAME_BYTES:
            await self._error("frame_too_large", "Frames may be at most 64 KB.")
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # nested deeper than the interpreter's stack
            await self._error("invalid_json", "The frame is not JSON.")
            return
        if not isinstance(message, dict):
            await self._error("invalid_message", "A message is a JSON object with a type.")
            return
        kind = message.get("type")
        if kind == "ping":
            await self.send(text_data='{"type": "pong"}')
        elif kind == "resume":
            last_seq = self._parse_seq(message.get("last_seq"))
            if last_seq is None:
                await self._error("invalid_last_seq", "last_seq must be a whole number >= 0.")
                return
            await self._start_stream_or_close(last_seq)
        else:
            await self._error("unknown_type", "Unknown message type.")

    def _over_rate(self) -> bool:
        """Take a token for this message; True if there was none (the message is dropped)."""
        now = monotonic()
        tokens = min(RATE_BURST, self.tokens + (now - self.tokens_at) * RATE_PER_SECOND)
        self.tokens_at = now
        if tokens >= RATE_BURST:
            self.dropped = 0  # quiet long enough to fill the bucket: a clean slate
        if tokens < 1:
            self.tokens = tokens
            return True
        self.tokens = tokens - 1
        return False

    async def _rate_limited(self) -> None:
        """Tell the client once; close if it goes on for another burst's worth."""
        self.dropped += 1
        if self.dropped == 1:
            await self._error(
                "rate_limited", f"Too many messages: at most {RATE_PER_SECOND:g} a second."
            )
        elif self.dropped > RATE_BURST:
            self.closing = True
            logger.info("closing a socket that kept sending too fast")
            await self.close(code=CLOSE_RATE_LIMITED)

    @staticmethod
    def _parse_seq(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        # isdigit() alone takes "²" and "①" (int() then raises) and "١٢" (int() reads 12).
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
            value = int(value)
        if isinstance(value, int) and 0 <= value < 2**63:
            return value
        return None

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Channels' send, except to a socket whose close has begun: autobahn refuses to
        send then (Disconnected, an ERROR with a traceback in daphne's log), and daphne
        only learns of the close when the connection is gone. A pong or an error for a
        client that is closing, or that was closed for a bad frame, is dropped instead."""
        if is_closing(getattr(self, "writer", None)):
            return
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        metrics.closed(code)  # every close the server starts, by code (docs/operations.md)
        await super().close(code=code, reason=reason)

    async def _error(self, code: str, detail: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": code, "detail": detail}))
