"""A group send from the calling thread (realtime.layers.DirectGroupSender) does what
channels_redis' own group_send does: every case runs through both, on the test Redis,
and is received through the layer."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings

from realtime.layers import DirectGroupSender, direct_sender

SENDERS = ["direct", "channels_redis"]


class Layer(RedisChannelLayer):
    """The test's layer, sending with `sender`'s group_send."""

    sender = "channels_redis"

    async def group_send(self, group: str, message: dict) -> None:
        if self.sender == "channels_redis":
            await super().group_send(group, message)
        else:  # blocking, as the publisher calls it from a thread of its own
            address = self.hosts[0]["address"]
            await asyncio.to_thread(
                DirectGroupSender(self, address, 5.0).group_send, group, message
            )


def make(sender: str, **config) -> RedisChannelLayer:
    base = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    # A prefix of its own: nothing another test left behind is in its groups.
    layer = Layer(hosts=base["hosts"], prefix=f"layers-{uuid.uuid4().hex[:8]}", **config)
    layer.sender = sender
    return layer


async def drained(layer: RedisChannelLayer, channel: str) -> list[dict]:
    found = []
    while True:
        try:
            found.append(await asyncio.wait_for(layer.receive(channel), 0.3))
        except TimeoutError:
            return found


@pytest.mark.parametrize("sender", SENDERS)
def test_every_member_gets_the_message_once_in_order(sender) -> None:
    async def run() -> tuple[list, list, list]:
        layer = make(sender)
        local = [await layer.new_channel() for _ in range(3)]  # one process's channels
        other = "elsewhere.member"
        for channel in [*local, other]:
            await layer.group_add("group", channel)
        for n in range(3):
            await layer.group_send("group", {"type": "test.message", "n": n})
        got = [[m["n"] for m in await drained(layer, channel)] for channel in local]
        elsewhere = [m["n"] for m in await drained(layer, other)]
        await layer.group_send("nobody-here", {"type": "test.message"})  # no members: fine
        await layer.flush()
        return got, elsewhere, local

    got, elsewhere, local = asyncio.run(run())
    assert got == [[0, 1, 2]] * len(local)
    assert elsewhere == [0, 1, 2]


@pytest.mark.parametrize("sender", SENDERS)
def test_members_past_the_group_expiry_are_dropped_and_get_nothing(sender) -> None:
    async def run() -> tuple[list, list, int]:
        layer = make(sender, group_expiry=1)
        stale, fresh = "member.stale", "member.fresh"
        await layer.group_add("group", stale)
        await asyncio.sleep(2.1)  # past group_expiry, with no renewal
        await layer.group_add("group", fresh)
        await layer.group_send("group", {"type": "test.message"})
        connection = layer.connection(0)
        left = await connection.zcard(layer._group_key("group"))
        result = await drained(layer, stale), await drained(layer, fresh), left
        await layer.flush()
        return result

    to_stale, to_fresh, left = asyncio.run(run())
    assert to_stale == [] and len(to_fresh) == 1 and left == 1


@pytest.mark.parametrize("sender", SENDERS)
def test_a_full_channel_gets_no_more_but_the_others_do(sender, caplog) -> None:
    async def run() -> tuple[int, int]:
        layer = make(sender, capacity=2)
        for channel in ("member.full", "member.reading"):
            await layer.group_add("group", channel)
        for n in range(4):
            await layer.group_send("group", {"type": "test.message", "n": n})
        connection = layer.connection(0)
        full = await connection.zcard(layer.prefix + "member.full")
        reading = len(await drained(layer, "member.reading"))
        await layer.flush()
        return full, reading

    caplog.set_level("INFO", logger="channels_redis.core")
    full, reading = asyncio.run(run())
    assert full == 2  # capacity: the first two wait, the rest were not added
    assert reading == 2  # each receive takes one; capacity applies to it as well
    assert "channels over capacity in group group" in caplog.text


@pytest.mark.parametrize("sender", SENDERS)
def test_expired_messages_make_room_before_the_capacity_check(sender) -> None:
    """A channel nobody read for longer than `expiry` holds only expired messages: they
    are dropped, and the new one is added."""

    async def run() -> list[int]:
        layer = make(sender, capacity=2, expiry=1)
        await layer.group_add("group", "member.slow")
        for n in range(2):
            await layer.group_send("group", {"type": "test.message", "n": n})
        await asyncio.sleep(2.1)  # both expired
        started = time.time()
        await layer.group_send("group", {"type": "test.message", "n": 2})
        assert time.time() - started < 1
        got = [m["n"] for m in await drained(layer, "member.slow")]
        await layer.flush()
        return got

    assert asyncio.run(run()) == [2]


def test_only_the_core_layer_on_one_host_is_sent_to_directly() -> None:
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    address = hosts[0]["address"]
    one = RedisChannelLayer(hosts=[{"address": address}])
    assert isinstance(direct_sender(one, 5.0), DirectGroupSender)
    assert direct_sender(one, 5.0) is direct_sender(one, 5.0)  # made once
    # Several hosts shard groups and channels over servers: channels_redis' own send.
    assert direct_sender(RedisChannelLayer(hosts=[address, address]), 5.0) is None
    assert direct_sender(RedisPubSubChannelLayer(hosts=[address]), 5.0) is None
    sentinel = {"master_name": "queue", "sentinels": [("127.0.0.1", 26379)]}
    assert direct_sender(RedisChannelLayer(hosts=[sentinel]), 5.0) is None
    # An option the blocking client would not have (TLS here): channels_redis' own send.
    tls = {"address": address, "ssl_ca_certs": "/etc/ssl/ca.pem"}
    assert direct_sender(RedisChannelLayer(hosts=[tls]), 5.0) is None
    # The settings' own host options are the async pool's: sent directly.
    assert isinstance(direct_sender(RedisChannelLayer(hosts=hosts), 5.0), DirectGroupSender)


def test_a_layer_given_up_is_collected_with_its_sender() -> None:
    """A settings change makes a new layer: the old one and its sender go."""
    import gc
    import weakref

    address = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]
    layer = RedisChannelLayer(hosts=[{"address": address}])
    assert direct_sender(layer, 5.0) is not None
    gone = weakref.ref(layer)
    del layer
    gc.collect()
    assert gone() is None


def _direct(layer: RedisChannelLayer) -> DirectGroupSender:
    return DirectGroupSender(layer, layer.hosts[0]["address"], 5.0)


def test_a_send_survives_redis_losing_the_scripts_and_the_connection() -> None:
    """After a Redis restart the scripts are gone and the connection is dead: the send
    loads the scripts again and reconnects, and the message arrives."""
    import redis

    async def run() -> list:
        layer = make("direct")
        channel = await layer.new_channel()
        await layer.group_add("group", channel)
        sender = _direct(layer)
        await asyncio.to_thread(sender.group_send, "group", {"type": "test.message", "n": 0})
        own_id = await asyncio.to_thread(sender.connection.execute, "CLIENT", "ID")
        admin = redis.Redis.from_url(layer.hosts[0]["address"])
        admin.script_flush()
        admin.client_kill_filter(_id=own_id)
        await asyncio.to_thread(sender.group_send, "group", {"type": "test.message", "n": 1})
        got = [m["n"] for m in await drained(layer, channel)]
        await layer.flush()
        return got

    assert asyncio.run(run()) == [0, 1]


def test_a_forked_child_sends_on_a_connection_of_its_own() -> None:
    """Celery's prefork pool forks workers from a process that may have published: the
    child must not write on the parent's socket (their replies would cross)."""
    import os

    async def subscribe(layer: RedisChannelLayer) -> str:
        channel = await layer.new_channel()
        await layer.group_add("group", channel)
        return channel

    layer = make("direct")
    channel = asyncio.run(subscribe(layer))
    sender = _direct(layer)
    sender.group_send("group", {"type": "test.message", "n": 0})
    parents = sender.connection.connection
    assert parents is not None
    pid = os.fork()
    if pid == 0:  # the child: a connection of its own, then a send on it
        code = 1
        try:
            if sender.connection.connection is None:
                sender.group_send("group", {"type": "test.message", "n": 1})
                code = 0 if sender.connection.connection is not parents else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sender.group_send("group", {"type": "test.message", "n": 2})  # the parent's is intact

    async def receive() -> list:
        got = [m["n"] for m in await drained(layer, channel)]
        await layer.flush()
        return got

    assert asyncio.run(receive()) == [0, 1, 2]


def test_a_command_that_timed_out_leaves_no_reply_behind(monkeypatch) -> None:
    """A reply not read in time would be read as the next command's: the connection is
    dropped, and the next command gets its own reply on a new one."""
    import redis

    sender = _direct(make("direct"))
    one = sender.connection
    assert one.execute("ECHO", "first") == b"first"

    def times_out(*args, **kwargs):
        raise redis.TimeoutError()

    monkeypatch.setattr(one.connection, "read_response", times_out)
    with pytest.raises(redis.TimeoutError):
        one.execute("ECHO", "lost")
    assert one.connection is None
    assert one.execute("ECHO", "second") == b"second"
