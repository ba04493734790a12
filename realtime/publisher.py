"""Publishing to the channel layer from synchronous code (views, admin, Celery tasks).

`async_to_sync(layer.group_send)` makes a new event loop and Redis connection per call
and can fail with "Event loop is closed" on channels_redis >= 4 (channels_redis#332).
Instead each process keeps one event loop in a daemon thread for the layer and hands
it messages. Callers wait for the send, so messages from one process leave in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0


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
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _loop_thread.loop())
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS)
    except Exception:
        future.cancel()
        logger.exception("publishing to group %s failed", group)
        return False
    return True
