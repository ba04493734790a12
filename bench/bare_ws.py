"""Baseline (a): a bare `websockets` broadcast server, the practical limit for Python.

Every socket gets a small snapshot on connect; every message PUBLISHed on the Redis
channel is relayed as is to every socket with websockets.broadcast (one frame encoded
once, written to each socket without awaiting). No authentication, no Django.

    python -m bench.bare_ws PORT REDIS_URL CHANNEL
"""

from __future__ import annotations

import asyncio
import resource
import sys

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()
SNAPSHOT = '{"type": "QueueSnapshot", "seq": 0, "queue": []}'


async def handler(connection: ServerConnection) -> None:
    await connection.send(SNAPSHOT)
    CLIENTS.add(connection)
    try:
        await connection.wait_closed()
    finally:
        CLIENTS.discard(connection)


async def relay(redis_url: str, channel: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    async for message in pubsub.listen():
        if message["type"] == "message":
            broadcast(CLIENTS, message["data"].decode())


async def main(port: int, redis_url: str, channel: str) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        print(f"listening on {port}", flush=True)
        await relay(redis_url, channel)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
