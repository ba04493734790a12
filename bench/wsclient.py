"""A light WebSocket client process holding many sockets, driven over stdin/stdout.

The `websockets` library spends some 20-30 us of Python per received message; with 5,000
sockets on a 2-core machine that would make the client the bottleneck. This client parses
frames by hand in an asyncio.Protocol: one data_received call, a header decode and a regex
for `"seq"` per message. Each socket reads its first message (the snapshot) before it
counts as connected.

Commands, one JSON object a line on stdin; one JSON answer a line on stdout:
    {"cmd": "connect", "targets": [[port, path], ...]}  open one socket per target
    {"cmd": "wait", "seq": S, "timeout": T}   until every open socket has seq S (or T s):
                                              count, first and last receipt, bytes;
                                              "expect": E waits for E sockets at least
    {"cmd": "times", "since": S}              every receipt time of seq >= S, per seq
    {"cmd": "stats"}                          open and closed sockets, messages, bytes
    {"cmd": "resume", "on": true}             from now on, a socket that drops reconnects
                                              with ?last_seq= (as live.js does) and each
                                              socket's seqs are checked for holes
    {"cmd": "close"}                          close every socket and exit
Times are time.monotonic(): CLOCK_MONOTONIC is one clock for every process of a machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from typing import Any

SEQ = re.compile(rb'"seq": ?(\d+)')
CONNECT_CONCURRENCY = 48
CONNECT_ATTEMPTS = 8
# After close code 1012 (service restart), as live.js: back at a random moment within
# RESTART_DELAY, then RESTART_DELAY doubling to RESTART_MAX_DELAY (+ up to 20%) until the
# next server answers (docs/protocol.md).
SERVICE_RESTART = 1012
RESTART_DELAY = 0.25
RESTART_MAX_DELAY = 2.0
# ... for a socket that got a message after its snapshot or was open this long (live.js).
SETTLED = 1.0


class Recorder:
    def __init__(self) -> None:
        self.open = 0
        self.closed = 0
        self.close_codes: dict[int, int] = defaultdict(int)
        self.messages = 0
        self.other_messages = 0
        self.bytes = 0
        # seq -> [count, first, last, bytes]
        self.by_seq: dict[int, list[float]] = {}
        self.times: dict[int, list[float]] = defaultdict(list)
        self.keep_times = False
        self.waiters: dict[int, asyncio.Future[None]] = {}
        # seq -> how many sockets a wait for it expects, when more than are open now
        # (sockets still reconnecting after a restart).
        self.expect: dict[int, int] = {}
        # Resume mode (the restart scenario): reconnect dropped sockets, count holes.
        self.resume = False
        self.gaps = 0
        self.reconnects = 0

    def on_message(self, payload: bytes, wire_bytes: int) -> None:
        now = time.monotonic()
        self.messages += 1
        self.bytes += wire_bytes
        match = SEQ.search(payload, 0, 400)
        if match is None:
            self.other_messages += 1
            return
        seq = int(match.group(1))
        row = self.by_seq.get(seq)
        if row is None:
            self.by_seq[seq] = [1, now, now, wire_bytes]
        else:
            row[0] += 1
            row[2] = now
            row[3] += wire_bytes
        if self.keep_times:
            self.times[seq].append(now)
        waiter = self.waiters.get(seq)
        if (
            waiter is not None
            and not waiter.done()
            and self.by_seq[seq][0] >= max(self.open, self.expect.get(seq, 0))
        ):
            waiter.set_result(None)


class Socket(asyncio.Protocol):
    def __init__(
        self,
        recorder: Recorder,
        request: bytes,
        last_seq: int | None = None,
        on_lost: Any = None,
    ) -> None:
        self.recorder = recorder
        self.request = request
        # The seq of the last message this client holds (the snapshot's, then each
        # event's): what a resume asks from. A resumed socket has no snapshot to skip.
        self.last_seq = last_seq
        self.resumed = last_seq is not None
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.snapshot: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.fragments: list[bytes] = []
        self.counted = False
        self.close_code: int | None = None
        self.opened_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.snapshot.done():
            self.snapshot.set_result(False)
        if self.counted:
            self.counted = False
            self.recorder.open -= 1
            self.recorder.closed += 1
            if self.recorder.resume and self.on_lost is not None:
                self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.transport.close()
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.opened_at = time.monotonic()
            if self.resumed and not self.snapshot.done():
                self.snapshot.set_result(True)  # nothing to skip: every message counts
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if second & 0x80:
                offset += 4  # servers do not mask, but be safe
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self._frame(first, payload, offset + length)

    def _frame(self, first: int, payload: bytes, wire_bytes: int) -> None:
        opcode = first & 0x0F
        if opcode == 0x9:  # ping: answer with a masked pong (mask key 0: payload unchanged)
            self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            return
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code = code
            self.recorder.close_codes[code] += 1
            self.transport.close()
            return
        if opcode == 0xA:
            return
        if not first & 0x80:  # a fragment: keep until the final one
            self.fragments.append(payload)
            return
        if opcode == 0 and self.fragments:
            payload = b"".join([*self.fragments, payload])
            self.fragments = []
        if not self.snapshot.done():
            match = SEQ.search(payload, 0, 400)
            self.last_seq = int(match.group(1)) if match else None
            self.snapshot.set_result(True)
            return
        if self.recorder.resume:
            match = SEQ.search(payload, 0, 400)
            if match is not None:
                seq = int(match.group(1))
                if b'"QueueSnapshot"' in payload[:100]:
                    self.last_seq = seq  # a fresh snapshot (reset): a new start
                elif self.last_seq is not None and seq > self.last_seq + 1:
                    self.recorder.gaps += 1
                    self.last_seq = seq
                elif self.last_seq is None or seq > self.last_seq:
                    self.last_seq = seq
        self.recorder.on_message(payload, wire_bytes)


class Client:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.sockets: list[Socket] = []
        self.reopen_limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.reopening: set[asyncio.Task] = set()

    async def open_one(
        self,
        port: int,
        path: str,
        limit: asyncio.Semaphore,
        last_seq: int | None = None,
        attempts: int = CONNECT_ATTEMPTS,
        delay: float = 0.2,
        max_delay: float | None = None,
    ) -> bool:
        """Open one socket, retrying: `delay` growing by itself each attempt (with jitter
        of +-50%), or, with `max_delay`, doubling up to it (+ up to 20%, as live.js)."""
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16)).decode()
        target = path
        if last_seq is not None:
            target += ("&" if "?" in path else "?") + f"last_seq={last_seq}"
        request = (
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()

        def lost(sock: Socket) -> None:
            self.recorder.reconnects += 1
            self.sockets.remove(sock)
            settled = sock.opened_at is not None and time.monotonic() - sock.opened_at >= SETTLED
            restart = sock.close_code == SERVICE_RESTART and settled
            task = loop.create_task(self.reopen(port, path, sock.last_seq, restart=restart))
            self.reopening.add(task)
            task.add_done_callback(self.reopening.discard)

        for attempt in range(attempts):
            async with limit:
                try:
                    _, sock = await loop.create_connection(
                        lambda: Socket(self.recorder, request, last_seq, lost), "127.0.0.1", port
                    )
                    ok = await asyncio.wait_for(sock.snapshot, 30)
                except (OSError, TimeoutError):
                    ok = False
            if ok:
                sock.counted = True
                self.recorder.open += 1
                self.sockets.append(sock)
                return True
            if max_delay is None:
                await asyncio.sleep(delay * (attempt + 1) * (0.5 + random.random()))
            else:
                wait = min(delay * 2**attempt, max_delay)
                await asyncio.sleep(wait * (1 + 0.2 * random.random()))
        return False

    async def reopen(
        self, port: int, path: str, last_seq: int | None, *, restart: bool = False
    ) -> None:
        """A dropped socket comes back with ?last_seq=, as live.js does. Closed with 1012
        (the server is restarting): live.js' rule for it (RESTART_DELAY). Otherwise a
        first try after a short jittered wait, then backing off in 0.1 s steps."""
        if restart:
            await asyncio.sleep(RESTART_DELAY * random.random())
            await self.open_one(
                port,
                path,
                self.reopen_limit,
                last_seq,
                attempts=60,
                delay=RESTART_DELAY,
                max_delay=RESTART_MAX_DELAY,
            )
            return
        await asyncio.sleep(0.05 * random.random())
        await self.open_one(port, path, self.reopen_limit, last_seq, attempts=60, delay=0.1)

    async def connect(self, targets: list[list[Any]]) -> dict[str, Any]:
        started = time.monotonic()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        results = await asyncio.gather(*(self.open_one(p, path, limit) for p, path in targets))
        return {
            "connected": sum(results),
            "failed": len(results) - sum(results),
            "seconds": time.monotonic() - started,
        }

    async def wait(self, seq: int, timeout: float, expect: int = 0) -> dict[str, Any]:
        recorder = self.recorder
        row = recorder.by_seq.get(seq)
        recorder.expect[seq] = expect
        if row is None or row[0] < max(recorder.open, expect):
            waiter = recorder.waiters[seq] = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                pass
            finally:
                recorder.waiters.pop(seq, None)
        row = recorder.by_seq.get(seq) or [0, None, None, 0]
        return {
            "count": row[0],
            "first": row[1],
            "last": row[2],
            "bytes": row[3],
            "open": recorder.open,
        }

    def stats(self) -> dict[str, Any]:
        r = self.recorder
        return {
            "open": r.open,
            "closed": r.closed,
            "close_codes": dict(r.close_codes),
            "messages": r.messages,
            "other_messages": r.other_messages,
            "bytes": r.bytes,
            "gaps": r.gaps,
            "reconnects": r.reconnects,
        }


async def main() -> None:
    client = Client()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(value: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        kind = command["cmd"]
        if kind == "connect":
            answer(await client.connect(command["targets"]))
        elif kind == "wait":
            answer(await client.wait(command["seq"], command["timeout"], command.get("expect", 0)))
        elif kind == "keep_times":
            client.recorder.keep_times = bool(command["on"])
            client.recorder.times.clear()
            answer({"ok": True})
        elif kind == "times":
            since = command.get("since", 0)
            times = client.recorder.times
            answer({str(seq): values for seq, values in times.items() if seq >= since})
        elif kind == "stats":
            answer(client.stats())
        elif kind == "resume":
            client.recorder.resume = bool(command["on"])
            answer({"ok": True})
        elif kind == "close":
            client.recorder.resume = False
            for sock in client.sockets:
                if sock.transport is not None:
                    sock.transport.close()
            await asyncio.sleep(0.2)
            answer({"ok": True})
            break


if __name__ == "__main__":
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
