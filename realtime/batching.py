"""Many sockets' database reads in one trip to the database thread.

daphne runs every database_sync_to_async call in one thread, one call after another, and
each call is a hop there and back (a future, a lock, a wake-up of the event loop) around
its queries. When a thousand sockets connect at once, a read each is a thousand hops and
a thousand queries in that one thread: 3.7-5.1 s for 1,000 sockets (bench/notes.md).

A HopBatcher gathers the keys asked for while its previous trip is under way and reads
them all in the next one: one hop and one query (`key IN (...)`) for a whole burst. The
first key of a burst waits for the loop's current turn to end, no longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from channels.db import database_sync_to_async

# Keys per trip: bounds the IN list and how long one trip holds the database thread.
MAX_BATCH = 1000


class HopBatcher:
    """`await get(key)` is `fetch([key...])[key]`, with the keys of concurrent callers
    fetched together. `fetch` runs in the database thread and returns a dict; a key it
    leaves out gets None. An exception from `fetch` reaches every caller of that trip."""

    def __init__(
        self,
        fetch: Callable[[dict[Hashable, Any]], Any],
        *,
        in_thread: bool = True,
        once: bool = False,
    ) -> None:
        # in_thread=False: `fetch` is a coroutine function run in the loop (a Redis
        # pipeline), not a function for the database thread.
        self.fetch = database_sync_to_async(fetch) if in_thread else fetch
        # once=True: what is fetched is used up (a one-time ticket): of the callers who
        # asked for one key in one trip, the first gets the value and the others None,
        # as if each had asked alone, one after another.
        self.once = once
        self.waiting: dict[Hashable, tuple[Any, list[asyncio.Future]]] = {}
        self.running = False
        self.task: asyncio.Task | None = None  # the drain under way (a reference keeps it)
        self.trips = 0  # for tests and the bench notes: how many hops were made

    async def get(self, key: Hashable, argument: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = self.waiting.get(key)
        if entry is None:
            self.waiting[key] = (argument, [future])
        else:
            entry[1].append(future)
        if not self.running:
            self.running = True
            self.task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # the sockets handled in this turn of the loop join in
            while self.waiting:
                keys = list(self.waiting)[:MAX_BATCH]
                batch = {key: self.waiting.pop(key) for key in keys}
                self.trips += 1
                try:
                    found = await self.fetch({key: arg for key, (arg, _) in batch.items()})
                except Exception as exc:
                    for _, futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, (_, futures) in batch.items():
                    value = found.get(key)
                    for future in futures:
                        if not future.done():
                            future.set_result(value)
                            if self.once:
                                value = None
        finally:
            self.running = False


_batchers: dict[tuple[int, str], HopBatcher] = {}


def batcher(
    name: str,
    fetch: Callable[[dict[Hashable, Any]], Any],
    *,
    in_thread: bool = True,
    once: bool = False,
) -> HopBatcher:
    """The running loop's batcher called `name` (one per daphne process, as the hub)."""
    key = (id(asyncio.get_running_loop()), name)
    found = _batchers.get(key)
    if found is None:
        found = _batchers[key] = HopBatcher(fetch, in_thread=in_thread, once=once)
    return found
