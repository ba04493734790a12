"""A group send from synchronous code without a hop to an event loop: channels_redis' core
layer's group_send, made with a blocking Redis client in the calling thread.

Every committed event is one group send to the hubs, and the process that made the
change waits for it (realtime.publisher). Through the publisher's event loop thread that
wait was ~0.5 ms even with nobody in the group (bench/notes.md): two thread wake-ups
under the GIL and redis-py's asyncio machinery, not Redis. Here it is two round trips:
the group's expired members removed and the rest read (one script), then
channels_redis' script that adds the message to each member's channel, which also drops
that channel's expired messages first (channels_redis sends those in a round trip of
their own). The keys, the members' messages and their serialization are the layer's own
(`_group_key`, `_map_channel_keys_to_connection`), so hubs receive exactly what
channels_redis would have sent (tests/unit/test_layers.py runs the same cases through
both).

Only for the core layer on one Redis host given by an address alone; otherwise (several
hosts, Sentinel, TLS options, the PubSub layer) the publisher uses the layer's own
group_send.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
import weakref
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer
from channels_redis.core import logger as channels_redis_logger
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

# channels_redis' group_send script, with each channel's expired messages removed first.
GROUP_SEND_SCRIPT = """
local now = ARGV[#ARGV - 2]
local expiry = ARGV[#ARGV - 1]
local expired_before = ARGV[#ARGV]
local over_capacity = 0
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


# The group's expired members removed and the rest read, as channels_redis does first: one
# command and one reply (a pipeline of the two cost redis-py twice the Python, on every
# committed event).
GROUP_MEMBERS_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class DirectGroupSender:
    """group_send for one core layer on one Redis host, from any thread: one connection a
    process (_OneConnection), made by a redis-py pool from the host's address."""

    def __init__(self, layer: RedisChannelLayer, address: str, timeout: float) -> None:
        # A proxy: _senders maps the layer to this, and a value that held its key would
        # keep every layer (one for each settings change) alive.
        self.layer = weakref.proxy(layer)
        pool = redis.ConnectionPool.from_url(
            address, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        # A connection that died with a Redis restart is replaced, not a lost send; a
        # Redis that does not answer costs one timeout, not one per retry.
        retry = Retry(
            ExponentialBackoff(cap=0.5, base=0.05), 3, supported_errors=(redis.ConnectionError,)
        )
        self.connection = _OneConnection(pool, retry)

    def group_send(self, group: str, message: dict[str, Any]) -> None:
        layer = self.layer
        assert layer.require_valid_group_name(group), "Group name not valid"
        key = layer._group_key(group)
        now = time.time()
        members = self.connection.script(
            GROUP_MEMBERS_SCRIPT, [key], [int(now) - layer.group_expiry]
        )
        if not members:
            return
        names = [member.decode("utf8") for member in members]
        by_host, messages, capacities = layer._map_channel_keys_to_connection(names, message)
        keys = by_host[0]
        over_capacity = self.connection.script(
            GROUP_SEND_SCRIPT,
            keys,
            [
                *(messages[key] for key in keys),
                *(capacities[key] for key in keys),
                now,
                layer.expiry,
                int(now) - int(layer.expiry),
            ],
        )
        if over_capacity > 0:
            # channels_redis' own line, for whoever watches for it.
            channels_redis_logger.info(
                "%s of %s channels over capacity in group %s", over_capacity, len(names), group
            )


class _OneConnection:
    """One Redis connection for a process's sends: a command written and its reply read in
    the calling thread, one thread at a time. redis-py's client around the same two steps
    (a pool, its retry wrapper, its metrics hooks) was half of a publish's CPU (0.08 ms
    against 0.045 for the script call: bench/notes.md, "Bound by the server"). A forked
    child starts with a connection and a lock of its own (os.register_at_fork)."""

    def __init__(self, pool: redis.ConnectionPool, retry: Retry) -> None:
        self.pool = pool
        self.retry = retry
        self.lock = threading.Lock()
        self.connection: redis.connection.AbstractConnection | None = None
        _connections.add(self)

    def script(self, source: str, keys: list[Any], args: list[Any]) -> Any:
        """EVALSHA of the script, loaded first when Redis does not have it (a restart)."""
        sha = _sha1(source)
        try:
            return self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            self.execute("SCRIPT", "LOAD", source)
            return self.execute("EVALSHA", sha, len(keys), *keys, *args)

    def execute(self, *args: Any) -> Any:
        with self.lock:
            try:
                return self.retry.call_with_retry(lambda: self._execute(args), self._drop)
            except redis.ResponseError:
                raise  # Redis answered: the connection is in step
            except BaseException:
                # A timeout (or anything else) mid-command would leave its reply to be
                # read as the next command's.
                self._drop()
                raise

    def _execute(self, args: tuple[Any, ...]) -> Any:
        if self.connection is None:
            self.connection = self.pool.make_connection()
        self.connection.send_command(*args)
        return self.connection.read_response()

    def _drop(self, error: Exception | None = None) -> None:
        if self.connection is not None:
            self.connection.disconnect()
            self.connection = None

    def forget_in_child(self) -> None:
        # The parent's connection is let go, not disconnected: collected here, it closes
        # the child's copy of the socket and does not shut it down (redis-py checks the
        # pid), so the parent's stays open.
        self.lock = threading.Lock()
        self.connection = None


_connections: weakref.WeakSet[_OneConnection] = weakref.WeakSet()


@functools.cache
def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def _forget_connections_in_child() -> None:
    for one in list(_connections):
        one.forget_in_child()


os.register_at_fork(after_in_child=_forget_connections_in_child)


# The host options the blocking client can do without: the async pool's own (this module
# sets its timeouts and retries). A host with any other (TLS certificates, a password
# given apart from the URL...) keeps channels_redis' send rather than a client without it.
_PLAIN_HOST_OPTIONS = {"address", "socket_timeout", "max_connections", "retry"}

# By layer (a settings change makes a new one); a forked child's connection starts
# afresh (_OneConnection).
_senders: weakref.WeakKeyDictionary[Any, DirectGroupSender | None] = weakref.WeakKeyDictionary()


def direct_sender(layer: Any, timeout: float) -> DirectGroupSender | None:
    """The DirectGroupSender for `layer`, made once; None unless the layer is
    channels_redis' core layer on one Redis host given by an address alone."""
    try:
        return _senders[layer]
    except KeyError:
        pass
    sender = None
    if type(layer) is RedisChannelLayer and layer.ring_size == 1:
        host = layer.hosts[0]
        if isinstance(host, dict) and "address" in host and set(host) <= _PLAIN_HOST_OPTIONS:
            sender = DirectGroupSender(layer, host["address"], timeout)
    _senders[layer] = sender  # two threads at once make two: harmless, one is kept
    return sender
