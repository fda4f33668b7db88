"""An open-loop HTTP/1.1 sender light enough to keep its schedule (by hand, never in CI).

Requests are written on plain asyncio streams over a pool of keep-alive connections to
127.0.0.1: request i is sent at start + i / rate whether or not earlier answers came back (a
free connection is taken, or a new one opened), so a slow server cannot slow the sender down
and hide its own queue. `Sent.rate` is the rate actually achieved, to be reported beside the
rate asked for. Every run is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Request = Callable[[int], tuple[str, dict[str, str], bytes]]  # i → (path, headers, body)


@dataclass
class Sent:
    asked_rate: float
    count: int
    seconds: float = 0.0  # from the first send to the last
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)  # how far behind schedule each was written

    @property
    def rate(self) -> float:
        return (self.count - 1) / self.seconds if self.seconds > 0 else float("nan")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return status, await self.reader.readexactly(length)


async def send(
    port: int,
    build: Request,
    *,
    rate: float,
    count: int,
    max_connections: int = 512,
    timeout_s: float = 300.0,
) -> Sent:
    """Send `count` requests at `rate` per second to 127.0.0.1:`port`; wait for every answer."""
    free: list[_Connection] = []
    opened = 0
    result = Sent(rate, count, statuses=[0] * count, bodies=[b""] * count)
    result.late_ms = [0.0] * count
    limit = asyncio.Semaphore(max_connections)

    start = 0.0
    written: list[float] = [0.0] * count

    async def connect() -> _Connection:
        nonlocal opened
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened += 1
        return _Connection(reader, writer)

    async def one(i: int, path: str, headers: dict[str, str], body: bytes) -> None:
        async with limit:
            conn = free.pop() if free else await connect()
            head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
            written[i] = time.monotonic()
            result.late_ms[i] = max(0.0, (written[i] - (start + i / rate)) * 1000)
            try:
                result.statuses[i], result.bodies[i] = await conn.exchange(raw)
            except (ConnectionError, asyncio.IncompleteReadError):
                # An idle keep-alive connection the server closed: once more on a new one.
                conn.writer.close()
                conn = await connect()
                result.statuses[i], result.bodies[i] = await conn.exchange(raw)
            free.append(conn)

    async def run() -> None:
        nonlocal start
        tasks = []
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            path, headers, body = build(i)
            tasks.append(asyncio.create_task(one(i, path, headers, body)))
        await asyncio.gather(*tasks)
        result.seconds = max(written) - min(written)

    try:
        await asyncio.wait_for(run(), timeout=timeout_s)
    finally:
        for conn in free:
            conn.writer.close()
    return result
