"""The per-process fan-out hub: one channel-layer subscription for all sockets of a daphne.

A group holding every socket costs the core layer one Redis write per member and each
socket a consumer dispatch (0.5 to 0.9 ms of CPU a socket-message, measured before the
hub). Instead the hub is the only member of the queue group in its process. For each event it
- repairs gaps from the QueueEvent log (the truth; Redis is the fast path), so events
  reach sockets in seq order with none missing even if a publish was lost or two
  processes' publishes crossed;
- encodes the event once per audience (full, full-but-not-mine, redacted) rather than
  once per socket;
- hands each registered socket the text it may see, with no dispatch of its own, and
  with the WebSocket frame built once per audience too (server frames are not masked, so
  every socket of an audience gets the same bytes).
Measured (docs/benchmarks.md): per socket-message, a stock consumer costs ~1 ms of daphne
CPU, this hub through daphne's ASGI send ~110 us, with prebuilt frames written straight to
the socket ~25-35 us, about what a bare `websockets` broadcast costs.

Messages for some users only (ProgressUpdate to an entry's owner and staff, access
revoked) come through the hub as well, on the user-messages group: one layer message per
process instead of one per socket channel, encoded once, and sockets need no channel of
their own (less memory per socket, no per-socket Redis round trip).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from realtime import daphne_io, metrics, queue_feed
from realtime.batching import batcher
from realtime.publisher import HUB_GROUPS
from realtime.queue_feed import (
    SnapshotEncoder,
    Viewer,
    audience_key,
    event_for_viewer,
    owners_in,
    redacted_audience_key,
    snapshot_for_viewer,
)

logger = logging.getLogger(__name__)

# Renew the group membership well within the layer's group_expiry (settings: 5 minutes, so
# that a hub whose process died, and which never left its groups, stops costing every
# publish a send to a channel nobody reads within minutes, not after a day). On a timer:
# a quiet queue brings no messages to renew it on.
GROUP_REFRESH_SECONDS = 60
# How often the hub compares its position with the log, to notice a lost tail event:
# one indexed query per process every few seconds.
LOG_CHECK_SECONDS = 3.0
# The timestamps of the last events delivered, by seq. An event published under a seq
# already delivered but with another timestamp is a new event under a reused seq: the
# log's tail was lost (PostgreSQL crashed after asynchronous commits, docs/architecture.md,
# "Asynchronous commit") and the log has moved past its old position before the log check
# saw it shorter.
DELIVERED_TIMESTAMPS = 1024
RECONNECT_DELAYS = (0.5, 1, 2, 5)
# Sockets that connect while the queue does not change share one snapshot read, at most
# this old (for progress and ETAs, which change without an event). A burst of connects
# costs one query set instead of one each in daphne's single database thread.
SNAPSHOT_MAX_AGE_SECONDS = 1.0
# Users whose own entries past the head are kept for sockets connecting together.
OWN_CACHE_USERS = 10_000
_NOTHING_PAST_HEAD: list[dict[str, Any]] = []
# Events whose encoded copies are kept for resuming sockets.
MAX_REPLAYED_EVENTS = 2000
ANONYMOUS = Viewer(user_id=None)


def _current_seq(wanted: dict[Any, Any]) -> dict[Any, int]:
    """The log's newest seq, for everyone who asked (the database thread)."""
    seq = queue_feed.current_seq()
    return dict.fromkeys(wanted, seq)


def _waiting_counts(wanted: dict[int, Any]) -> dict[int, Any]:
    """queue_feed.waiting_counts for each seq asked (the database thread)."""
    return {seq: queue_feed.waiting_counts(seq) for seq in wanted}


def _own_entries_of(wanted: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
    """Own entries past the head for (owner, seq) pairs, one read per seq (the database
    thread)."""
    by_seq: dict[int, list[int]] = {}
    for owner_id, seq in wanted:
        by_seq.setdefault(seq, []).append(owner_id)
    found: dict[tuple[int, int], Any] = {}
    for seq, owner_ids in by_seq.items():
        for owner_id, own in queue_feed.own_entries_past_head_of(owner_ids, seq).items():
            found[owner_id, seq] = own
    return found


class Subscriber(Protocol):
    viewer: Viewer

    def deliver(self, seq: int, text: str, frame: bytes) -> Awaitable[None] | None:
        """Send event `seq`: `text`, or `frame` (the same text as a WebSocket frame).

        Returns None when done, or an awaitable for the hub to wait on. Sending without
        a coroutine per socket saves ~5 us a socket-message.
        """
        ...

    def deliver_update(self, text: str, frame: bytes) -> Awaitable[None] | None:
        """Send a message without seq (a ProgressUpdate); like deliver()."""
        ...

    def revoke(self, credential: str | None) -> Awaitable[None] | None:
        """The user's access was revoked: close if opened with `credential` (or any)."""
        ...

    def reset(self) -> Awaitable[None] | None:
        """The event log went back: close, so the client resumes and gets a fresh snapshot."""
        ...

    def close_for_restart(self) -> Awaitable[None] | None:
        """The server is stopping: close with 1012 at once, so the client resumes."""
        ...


def websocket_frame(text: str) -> bytes:
    """`text` as one unmasked, final WebSocket text frame (RFC 6455 5.2), as servers send."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


class Hub:
    """Receives queue events for one process and fans them out to its sockets."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        # The same sockets by viewer: an event's copy is chosen once per viewer, not once
        # per socket (a user with three tabs, staff's sockets, anonymous sockets).
        self.by_viewer: dict[Viewer, set[Subscriber]] = {}
        # Who a ProgressUpdate or a revocation is for, without a pass over every viewer:
        # the viewers of each signed-in user (str of the id, as in messages), and staff's.
        self.viewers_of_user: dict[str, set[Viewer]] = {}
        self.staff_viewers: set[Viewer] = set()
        self.last_seq: int | None = None
        # How many times the hub followed the log back (log_went_back): a read begun
        # before the last time compares with the old log, and proves nothing.
        self._log_epoch = 0
        self._delivered: dict[int, str] = {}  # DELIVERED_TIMESTAMPS
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        # Held while delivering, so the receiver and the log watcher never interleave.
        self._lock = asyncio.Lock()
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_at = 0.0
        self._snapshot_build: asyncio.Task | None = None
        # Each signed-in user's entries past the head, by user: (seq, read at, entries).
        self._own: dict[int, tuple[int, float, list[dict[str, Any]]]] = {}
        # Snapshot texts by (viewer, reset): (shared snapshot, own entries, text).
        self._texts: dict[tuple[Viewer, bool], tuple[Any, Any, str]] = {}
        # The shared snapshot's parts encoded once for viewers who are not staff, by
        # reset: (that snapshot, its SnapshotEncoder).
        self._encoders: dict[bool, tuple[dict[str, Any], SnapshotEncoder]] = {}
        # The owners of the shared snapshot's entries: (that snapshot, their ids as str).
        self._owners: tuple[dict[str, Any], set[str]] | None = None
        # The users with entries past the shared snapshot's head: (that snapshot, their ids).
        self._behind: tuple[dict[str, Any], set[int]] | None = None
        # Events sent to resuming sockets, by seq: (the message, its owners, texts by
        # audience key).
        self._replayed: dict[int, tuple[dict[str, Any], set[str], dict[tuple, str]]] = {}
        # Replays by (last_seq, limit): the read, when it began.
        self._replays: dict[tuple[int, int], tuple[asyncio.Task, float]] = {}
        # Whether daphne's stop closes this hub's sockets first (close_for_restart).
        self._closes_on_shutdown = False

    async def register(self, subscriber: Subscriber, timeout: float = 10.0) -> None:
        """Add a socket once the hub is subscribed; raises TimeoutError if it cannot be.

        A socket reads its snapshot (Hub.snapshot) only after this returns, so every
        event newer than the snapshot reaches it: in its pending buffer or from the log.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="queue-hub")
            if not self._closes_on_shutdown:
                self._closes_on_shutdown = daphne_io.on_daphne_shutdown(self.close_for_restart)
        if not self._ready.is_set():
            # wait_for makes a task and a timer: only while the hub is not subscribed yet.
            await asyncio.wait_for(self._ready.wait(), timeout)
        self.add(subscriber)

    def add(self, subscriber: Subscriber) -> None:
        """Start delivering to `subscriber` (register() waits for the hub first)."""
        self.subscribers.add(subscriber)
        metrics.connections(len(self.subscribers))
        viewer = subscriber.viewer
        if viewer not in self.by_viewer:
            self.by_viewer[viewer] = set()
            if viewer.user_id is not None:
                self.viewers_of_user.setdefault(str(viewer.user_id), set()).add(viewer)
            if viewer.is_staff:
                self.staff_viewers.add(viewer)
        self.by_viewer[viewer].add(subscriber)

    async def snapshot(self, requester: Subscriber | None = None) -> dict[str, Any]:
        """The widest window on the queue (events.STAFF_HEAD_PLACES, protocol version 2),
        unredacted, with the requester's own entries if signed in, at or after every
        event this hub has delivered.

        So a socket registered before it asks misses nothing between the snapshot and
        what the hub delivers next. Shared by sockets connecting together; read again
        once the hub delivers an event or it is SNAPSHOT_MAX_AGE_SECONDS old.
        """
        shared, own = await self._snapshot_parts(requester)
        if own is None:
            return shared  # anonymous, or a viewer's own read (the queue moved meanwhile)
        return {**shared, "queue": [*shared["queue"], *own]} if own else shared

    async def snapshot_text(self, requester: Subscriber, *, reset: bool = False) -> tuple[int, str]:
        """The requester's snapshot (snapshot(), cut to its viewer's window) as JSON text,
        and its seq. Encoded once per viewer and shared snapshot: a user's tabs, and
        every anonymous socket, connecting together share the text."""
        shared, own = await self._snapshot_parts(requester)
        own = own or None  # nothing past the head, as for anonymous viewers
        viewer = requester.viewer
        if not (viewer.is_staff or own) and str(viewer.user_id) not in self._owners_in(shared):
            # Owns nothing in this window: the same bytes as every such viewer's.
            viewer = ANONYMOUS
        key = (viewer, reset)
        cached = self._texts.get(key)
        if cached is not None and cached[0] is shared and cached[1] is own:
            return shared["seq"], cached[2]
        if viewer.is_staff:
            full = {**shared, "queue": [*shared["queue"], *own]} if own else shared
            snapshot = snapshot_for_viewer(full, viewer)
            if reset:
                snapshot["reset"] = True
            text = json.dumps(snapshot)
        else:
            # The same bytes, with the redacted entries encoded once per shared snapshot
            # (each owner of entries in it has a text of its own: a pass over the window
            # instead of a cut and an encoding each, ~0.3 ms at 220 entries).
            encoder = self._encoders.get(reset)
            if encoder is None or encoder[0] is not shared:
                encoder = self._encoders[reset] = (shared, SnapshotEncoder(shared, reset=reset))
            text = encoder[1].text(viewer, own)
        if len(self._texts) > OWN_CACHE_USERS:
            self._texts.clear()
        self._texts[key] = (shared, own, text)
        return shared["seq"], text

    async def _snapshot_parts(
        self, requester: Subscriber | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        """The shared snapshot and the requester's own entries past its head (None for
        anonymous viewers; then, when the queue moved on meanwhile, the first part is
        that viewer's own read, with their entries)."""
        shared = await self._shared_snapshot(requester)
        owner_id = requester.viewer.user_id if requester is not None else None
        if owner_id is None:
            return shared, None
        if shared["waiting"] <= queue_feed.STAFF_HEAD_PLACES:
            return shared, _NOTHING_PAST_HEAD  # the whole line is in the shared head
        behind = await self._owners_behind(shared)
        if behind is not None and owner_id not in behind:
            return shared, _NOTHING_PAST_HEAD  # all of theirs that wait are in the head
        # A signed-in viewer's window also holds their own entries past the head: read
        # at the shared snapshot's seq, once for all their sockets, and for all users
        # connecting together in one read (realtime.batching).
        loop = asyncio.get_running_loop()
        cached = self._own.get(owner_id)
        if cached is not None and cached[0] == shared["seq"] and loop.time() - cached[1] < 1.0:
            return shared, cached[2]
        own = await batcher("own-entries", _own_entries_of).get((owner_id, shared["seq"]))
        if own is None:  # the queue moved on meanwhile: this viewer's own read
            at_least, epoch = self.last_seq or 0, self._log_epoch
            snapshot = await database_sync_to_async(queue_feed.queue_snapshot)(owner_id=owner_id)
            self.follow_log(
                snapshot["seq"], delivered_before_read=at_least, keep=requester, epoch=epoch
            )
            return snapshot, None
        if len(self._own) > OWN_CACHE_USERS:
            self._own.clear()
        self._own[owner_id] = (shared["seq"], loop.time(), own)
        return shared, own

    def _owners_in(self, shared: dict[str, Any]) -> set[str]:
        """The owners of the entries in a shared snapshot (as in messages: str of the id)."""
        if self._owners is None or self._owners[0] is not shared:
            self._owners = (shared, {str(entry.get("owner_id")) for entry in shared["queue"]})
        return self._owners[1]

    async def _owners_behind(self, shared: dict[str, Any]) -> set[int] | None:
        """The users with entries waiting past `shared`'s head: those waiting more than the
        head holds of theirs. One read of the counts per shared snapshot, so the sockets
        of everyone else need no read of their own; None if the queue moved on."""
        if self._behind is not None and self._behind[0] is shared:
            return self._behind[1]
        counts = await batcher("waiting-counts", _waiting_counts).get(shared["seq"])
        if counts is None:
            return None
        in_head = Counter(
            int(entry["owner_id"]) for entry in shared["queue"] if entry["status"] == "queued"
        )
        behind = {owner for owner, waiting in counts.items() if waiting > in_head[owner]}
        self._behind = (shared, behind)
        return behind

    async def _shared_snapshot(self, requester: Subscriber | None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        at_least, epoch = self.last_seq or 0, self._log_epoch
        cached = self._snapshot
        # One indexed read instead of the snapshot's several: the log's seq tells whether
        # the queue changed (or the log went back: a restored database). Sockets asking
        # together share that read too (realtime.batching): each gets one begun after it
        # asked.
        if (
            cached is not None
            and loop.time() - self._snapshot_at < SNAPSHOT_MAX_AGE_SECONDS
            and cached["seq"] == at_least
            and cached["seq"] == await batcher("current-seq", _current_seq).get(None)
        ):
            return cached
        build = self._snapshot_build
        if build is not None and not build.done():
            snapshot = await asyncio.shield(build)
            if snapshot["seq"] >= at_least:
                return snapshot
            # That read began before events this hub has delivered since: read again.
        build = self._snapshot_build = loop.create_task(self._read_snapshot())
        snapshot = await asyncio.shield(build)
        self.follow_log(
            snapshot["seq"], delivered_before_read=at_least, keep=requester, epoch=epoch
        )
        return snapshot

    async def _read_snapshot(self) -> dict[str, Any]:
        snapshot = await database_sync_to_async(queue_feed.queue_snapshot)()
        self._snapshot, self._snapshot_at = snapshot, asyncio.get_running_loop().time()
        return snapshot

    async def replay(
        self, requester: Subscriber, last_seq: int, limit: int
    ) -> list[dict[str, Any]] | None:
        """The logged events after `last_seq` (queue_feed.events_to_replay), at least up
        to every event this hub has delivered; None when the client needs a snapshot.

        Sockets resuming from the same seq together (every client after a restart) share
        one read, as they share the snapshot."""
        loop = asyncio.get_running_loop()
        at_least, epoch = self.last_seq or 0, self._log_epoch
        shared = self._replays.get((last_seq, limit))
        if shared is not None and loop.time() - shared[1] < SNAPSHOT_MAX_AGE_SECONDS:
            newest, events = await asyncio.shield(shared[0])
            if newest >= at_least:
                return events
        read = loop.create_task(
            database_sync_to_async(queue_feed.events_to_replay)(last_seq, limit)
        )
        if len(self._replays) > OWN_CACHE_USERS:
            self._replays.clear()
        self._replays[(last_seq, limit)] = (read, loop.time())
        newest, events = await asyncio.shield(read)
        self.follow_log(newest, delivered_before_read=at_least, keep=requester, epoch=epoch)
        return events

    def event_text(self, message: dict[str, Any], viewer: Viewer) -> str:
        """A logged event as `viewer` may see it, as JSON text: for resumes, encoded once
        per audience as in fan_out (every client resuming after a restart replays the
        same few events)."""
        seq = message["seq"]
        meta = self._replayed.get(seq)
        if meta is None or meta[0] is not message:
            if len(self._replayed) > MAX_REPLAYED_EVENTS:
                self._replayed.clear()
            meta = self._replayed[seq] = (message, owners_in(message), {})
        _, owners, texts = meta
        if viewer.is_staff or (viewer.user_id is not None and str(viewer.user_id) in owners):
            key = audience_key(message, viewer)
        else:
            key = redacted_audience_key(message)
        text = texts.get(key)
        if text is None:
            text = texts[key] = json.dumps(event_for_viewer(message, viewer))
        return text

    def follow_log(
        self,
        newest: int,
        *,
        delivered_before_read: int | None,
        keep: Subscriber | None = None,
        epoch: int | None = None,
    ) -> None:
        """`newest` is the log's seq, read after this hub had delivered up to
        `delivered_before_read`. Below that, the log went back; above it is normal (the
        hub may also have moved on during the read, which proves nothing). `epoch`: the
        hub's _log_epoch when the read began; if the hub has followed the log back since
        (another socket's read saw it first), this read's comparison is with the old log:
        acting on it again would close the socket that read the new log first."""
        if epoch is not None and epoch != self._log_epoch:
            return
        if delivered_before_read is not None and newest < delivered_before_read:
            self.log_went_back(newest, keep=keep)

    def log_went_back(self, seq: int, keep: Subscriber | None = None) -> None:
        """The log restarted below our position (the database was restored or flushed,
        or lost its last asynchronous commits in a crash): follow it, or the hub would
        drop every new event as already delivered.

        Its sockets hold state from the old log, and would drop the new log's events as
        seen too: close them all (but `keep`, the socket reading the new log right now)
        so that their clients resume and get a fresh snapshot.
        """
        logger.warning(
            "event log is at seq %s, behind the hub's %s; following it and closing %s sockets",
            seq,
            self.last_seq,
            len(self.subscribers) - (keep in self.subscribers),
        )
        self.last_seq = seq
        self._log_epoch += 1
        self._delivered.clear()
        self._snapshot = None
        self._replays.clear()
        self._replayed.clear()
        self._own.clear()
        stale = self.subscribers - {keep}
        for subscriber in stale:
            self.unregister(subscriber)
        if stale:
            asyncio.get_running_loop().create_task(_each(stale, lambda s: s.reset()))

    def close_for_restart(self) -> int:
        """The server is stopping (daphne got SIGTERM): close every socket with 1012
        (service restart) now, before daphne's own, slower shutdown, so that clients resume
        with ?last_seq= from the next server at once (docs/protocol.md). Synchronous: it
        runs in Twisted's shutdown trigger. Returns how many sockets were closed."""
        closing = list(self.subscribers)
        self.subscribers.clear()
        self.by_viewer.clear()
        self.viewers_of_user.clear()
        self.staff_viewers.clear()
        metrics.connections(0)
        waiting = []
        for subscriber in closing:
            try:
                result = subscriber.close_for_restart()
            except Exception:  # one broken socket must not keep the others open
                logger.exception("closing a socket for the restart failed")
                continue
            if result is not None:
                waiting.append(result)
        if waiting:  # only under another server than daphne (its ASGI close)
            asyncio.get_running_loop().create_task(_await_all(waiting))
        return len(closing)

    def unregister(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        metrics.connections(len(self.subscribers))
        viewer = subscriber.viewer
        same_viewer = self.by_viewer.get(viewer)
        if same_viewer is None:
            return
        same_viewer.discard(subscriber)
        if same_viewer:
            return
        del self.by_viewer[viewer]
        self.staff_viewers.discard(viewer)
        same_user = self.viewers_of_user.get(str(viewer.user_id))
        if same_user is not None:
            same_user.discard(viewer)
            if not same_user:
                del self.viewers_of_user[str(viewer.user_id)]

    async def _run(self) -> None:
        layer = get_channel_layer()
        watcher = asyncio.get_running_loop().create_task(self._watch_log())
        attempt = 0
        try:
            while True:
                try:
                    await self._subscribe_and_receive(layer)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._ready.clear()
                    delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                    attempt += 1
                    logger.warning("queue hub lost the channel layer; retrying in %s s", delay)
                    await asyncio.sleep(delay)
        finally:
            watcher.cancel()

    async def _subscribe_and_receive(self, layer) -> None:
        # The default prefix: channels_redis receives every process-local channel through
        # one BZPOPMIN loop keyed by prefix, so another prefix would starve the consumers'.
        channel = await layer.new_channel()
        for group in HUB_GROUPS:
            await layer.group_add(group, channel)
        async with self._lock:
            if self.last_seq is None:
                # Subscribed first, then read: whatever commits after this read arrives.
                self.last_seq = await database_sync_to_async(queue_feed.current_seq)()
            else:
                await self._catch_up(None)  # what was published while we were away
        self._ready.set()
        keeper = asyncio.get_running_loop().create_task(self._keep_membership(layer, channel))
        try:
            await self._receive(layer, channel)
        finally:
            keeper.cancel()

    async def _receive(self, layer, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            kind = message.get("type")
            if kind == "queue.event":
                async with self._lock:
                    await self._on_event(message["event"])
            elif kind == "progress.update":
                await self.send_progress(message["update"])
            elif kind == "access.revoked":
                await self.revoke(message.get("user_id"), message.get("credential"))

    async def _keep_membership(self, layer, channel: str) -> None:
        """Renew the hub's groups every GROUP_REFRESH_SECONDS, messages or none. A failure
        is only logged: the receive loop notices a lost layer and subscribes again."""
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            try:
                for group in HUB_GROUPS:
                    await layer.group_add(group, channel)
            except Exception as exc:
                logger.warning("queue hub could not renew its groups: %s", type(exc).__name__)

    async def _watch_log(self) -> None:
        """Notice an event whose publish was lost when no later event shows the gap."""
        while True:
            await asyncio.sleep(LOG_CHECK_SECONDS)
            if not self._ready.is_set() or not self.subscribers:
                continue
            try:
                async with self._lock:  # no delivery moves last_seq during the read
                    delivered = self.last_seq
                    current = await database_sync_to_async(queue_feed.current_seq)()
                    self.follow_log(current, delivered_before_read=delivered)
                    await self._catch_up(None)
            except Exception:
                logger.warning("queue hub could not read the event log", exc_info=True)

    async def _on_event(self, message: dict[str, Any]) -> None:
        seq = message["seq"]
        if self.last_seq is not None and seq <= self.last_seq:
            delivered = self._delivered.get(seq)
            if delivered is None or delivered == message.get("timestamp"):
                return  # already delivered (fetched from the log when a gap was seen)
            self.log_went_back(seq - 1)  # another event under that seq: see _delivered
        if self.last_seq is not None and seq > self.last_seq + 1:
            await self._catch_up(seq)
        await self.fan_out(message)

    async def _catch_up(self, until: int | None) -> None:
        """Deliver logged events after last_seq (and before `until`, when given)."""
        if self.last_seq is None:
            return
        missing = await database_sync_to_async(queue_feed.events_between)(self.last_seq, until)
        for message in missing:
            await self.fan_out(message)

    async def fan_out(self, message: dict[str, Any]) -> None:
        started = time.perf_counter()
        seq = self.last_seq = message["seq"]
        delivered = self._delivered
        delivered[seq] = message.get("timestamp", "")
        if len(delivered) > DELIVERED_TIMESTAMPS:
            del delivered[next(iter(delivered))]  # the oldest
        # Who may see more than the redacted copy: staff, and the owners of the entries in
        # the event (audience_key tells them apart). Everyone else shares one copy.
        owners = owners_in(message)
        redacted_key = redacted_audience_key(message)
        encoded: dict[tuple, tuple[str, bytes]] = {}
        for viewer, subscribers in list(self.by_viewer.items()):
            if viewer.is_staff or (viewer.user_id is not None and str(viewer.user_id) in owners):
                key = audience_key(message, viewer)
            else:
                key = redacted_key
            copy = encoded.get(key)
            if copy is None:
                text = json.dumps(event_for_viewer(message, viewer))
                copy = encoded[key] = (text, websocket_frame(text))
            text, frame = copy
            await _each(subscribers, lambda s, t=text, f=frame: s.deliver(seq, t, f))
        metrics.fanned_out(time.perf_counter() - started)

    async def send_progress(self, update: dict[str, Any]) -> None:
        """A ProgressUpdate to the sockets of the entry's owner and of staff."""
        viewers = self.viewers_of_user.get(str(update.get("owner_id")), set()) | self.staff_viewers
        if not viewers:
            return
        text = json.dumps(update)
        frame = websocket_frame(text)
        for viewer in viewers:
            await _each(self.by_viewer.get(viewer, ()), lambda s: s.deliver_update(text, frame))

    async def revoke(self, user_id: str | None, credential: str | None) -> None:
        """Close the user's sockets opened with `credential`, or all of them when None."""
        for viewer in list(self.viewers_of_user.get(str(user_id), ())):
            await _each(self.by_viewer.get(viewer, ()), lambda s: s.revoke(credential))


async def _each(subscribers: Iterable[Subscriber], call: Any) -> None:
    for subscriber in list(subscribers):  # a call may unregister its socket
        try:
            waiting = call(subscriber)
            if waiting is not None:
                await waiting
        except Exception:  # one broken socket must not stop the others
            logger.exception("delivering to a socket failed")


async def _await_all(waiting: list[Awaitable[None]]) -> None:
    await asyncio.gather(*waiting, return_exceptions=True)


_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per daphne process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None:
        hub = _hubs[id(loop)] = Hub()
    return hub
