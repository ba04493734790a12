"""Publishing from synchronous code (views, Celery tasks) through one long-lived loop."""

from __future__ import annotations

import asyncio
import threading

from channels.layers import get_channel_layer

from realtime import publisher


def test_many_publishes_arrive_in_order_from_one_thread_or_several():
    layer = get_channel_layer()

    async def subscribe() -> str:
        channel = await layer.new_channel()
        await layer.group_add("publisher-test", channel)
        return channel

    async def receive_all(channel: str, count: int) -> list[int]:
        return [(await layer.receive(channel))["n"] for _ in range(count)]

    channel = asyncio.run(subscribe())
    # channels_redis keeps connections per event loop; asyncio.run's loop is gone now,
    # and the publisher must not care (it sends with a client of its own: realtime.layers).
    for n in range(50):
        assert publisher.publish_to_group("publisher-test", {"type": "test.message", "n": n})

    # From several threads at once (Celery's threads pool, Django's sync views).
    sent: list[bool] = []
    workers = [
        threading.Thread(
            target=lambda: sent.append(
                publisher.publish_to_group("publisher-test", {"type": "test.message", "n": -1})
            )
        )
        for _ in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sent == [True] * 8

    received = asyncio.run(receive_all(channel, 58))
    assert received[:50] == list(range(50))
    assert received[50:] == [-1] * 8


def test_a_failed_publish_returns_false_and_does_not_raise(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0"}]},
        }
    }
    assert publisher.publish_to_group("publisher-test", {"type": "test.message"}) is False
