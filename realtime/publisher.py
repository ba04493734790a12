"""Publishing to the channel layer from synchronous code (views, admin, Celery tasks):
the one door into realtime. queue_app calls it (through queue_app.broadcast) with
messages it has built; this module decides nothing about their content.

`async_to_sync(layer.group_send)` makes a new event loop and Redis connection per call
and can fail with "Event loop is closed" on channels_redis >= 4 (channels_redis#332).
Instead, for channels_redis' core layer on one Redis host, the calling thread sends
with a blocking client (realtime.layers: the hop to a loop thread was most of a send's
cost); for any other layer each process keeps one event loop in a daemon thread and
hands it messages. Callers wait for the send, so messages from one thread leave in
order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from channels.layers import get_channel_layer

from realtime import metrics
from realtime.layers import direct_sender

logger = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0
QUEUE_GROUP = "queue"
# Messages for some users' sockets only (progress, access revoked). Like the queue group,
# its members are the hubs, one per daphne process, which deliver to the right sockets.
USER_MESSAGES_GROUP = "user-messages"
# The groups every hub joins.
HUB_GROUPS = (QUEUE_GROUP, USER_MESSAGES_GROUP)
# ProgressUpdate is coalesced to at most this many messages a second per entry.
PROGRESS_MAX_PER_SECOND = 5


class _LoopThread:
    """One asyncio loop in a daemon thread, recreated after a fork (Celery prefork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="channel-layer-publisher", daemon=True
                )
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


_loop_thread = _LoopThread()


def publish_to_group(group: str, message: dict[str, Any]) -> bool:
    """Send `message` to `group`; True once Redis has it. Never raises.

    An event that fails to publish is still in the QueueEvent log, which is the truth:
    clients find the gap by `seq` and resume from the log.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    sender = direct_sender(layer, SEND_TIMEOUT_SECONDS)
    try:
        if sender is not None:  # in this thread: no hop to the loop (realtime.layers)
            sender.group_send(group, message)
        else:
            future = asyncio.run_coroutine_threadsafe(
                layer.group_send(group, message), _loop_thread.loop()
            )
            try:
                future.result(timeout=SEND_TIMEOUT_SECONDS)
            finally:
                future.cancel()  # a no-op once done
    except Exception as exc:
        # A Redis outage fails every publish; the log repairs it (hubs catch up), so one
        # WARNING line each, not a traceback at ERROR.
        logger.warning("publishing to group %s failed: %s", group, type(exc).__name__)
        metrics.published(message["type"], sent=False)
        return False
    metrics.published(message["type"], sent=True)
    return True


def publish_queue_event(message: dict[str, Any]) -> bool:
    """Send a committed queue event (a full QueueUpdate) to every hub."""
    return publish_to_group(QUEUE_GROUP, {"type": "queue.event", "event": message})


class ProgressThrottle:
    """Drops progress ticks that come faster than PROGRESS_MAX_PER_SECOND per entry.

    A new stage and the final tick (1.0) always pass, so nobody is left at 99%.
    """

    def __init__(self, per_second: int = PROGRESS_MAX_PER_SECOND) -> None:
        self.interval = 1.0 / per_second
        self._last: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def allow(self, entry_id: str, stage: str, progress: float) -> bool:
        now = time.monotonic()
        with self._lock:
            sent_at, sent_stage = self._last.get(entry_id, (float("-inf"), ""))
            if stage == sent_stage and progress < 1.0 and now - sent_at < self.interval:
                return False
            self._last[entry_id] = (now, stage)
            if len(self._last) > 10_000:  # forget finished entries now and then
                self._last.clear()
            return True


_progress_throttle = ProgressThrottle()


def publish_progress(update: dict[str, Any]) -> bool:
    """Send a ProgressUpdate (with `entry_id`, `owner_id`, `stage`, `progress`) to the hubs,
    which hand it to the owner's and staff's sockets; False if coalesced away or not sent.
    """
    if not _progress_throttle.allow(update["entry_id"], update["stage"], update["progress"]):
        return False
    return publish_to_group(USER_MESSAGES_GROUP, {"type": "progress.update", "update": update})


def revoke_access(*, user_id: int, credential: str | None = None) -> None:
    """Close the user's sockets opened with `credential` (a fingerprint), or all of them."""
    publish_to_group(
        USER_MESSAGES_GROUP,
        {"type": "access.revoked", "user_id": str(user_id), "credential": credential},
    )
