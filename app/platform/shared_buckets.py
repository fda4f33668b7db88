"""The shared rate-limit buckets: the `rate_buckets` table (`app.models.RateBucket`) on
PostgreSQL, taken in batches on a small asyncpg pool of their own. `app.platform.limiter`
decides when to ask them and what to do when they do not answer."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import make_url

from app.platform.shutdown import cancel

BATCH_KEYS = 256  # most keys in one take statement


# One statement for every take waiting in this process: per key ($1, sorted, so that two
# processes lock shared rows in the same order and never deadlock), the tokens asked for ($2),
# one token's time ($3, seconds) and the burst ($4). Each bucket gives what it holds, up to
# what is asked: burst - (full_at - now) / token, rounded down; `full_at` moves on by what it
# gave. A new key is a full bucket. The ON CONFLICT branch reads the row as it was.
_TAKE = """
WITH ask AS (SELECT * FROM unnest($1::bytea[], $2::int[], $3::float8[], $4::int[])
             AS a(key, n, token_s, burst))
INSERT INTO rate_buckets AS b (key, full_at, taken)
SELECT a.key, statement_timestamp() + least(a.n, a.burst) * a.token_s * interval '1 second',
       least(a.n, a.burst)
FROM ask a ORDER BY a.key
ON CONFLICT (key) DO UPDATE SET (full_at, taken) = (
    SELECT g.since + g.taken * a.token_s * interval '1 second', g.taken
    FROM ask a
    CROSS JOIN LATERAL (SELECT greatest(b.full_at, statement_timestamp()) AS since) s
    CROSS JOIN LATERAL (
        SELECT s.since, least(a.n, greatest(0, floor(a.burst + 1e-9
            - extract(epoch FROM s.since - statement_timestamp())::float8 / a.token_s)))::int
            AS taken
    ) g
    WHERE a.key = b.key
)
RETURNING b.key, b.taken, extract(epoch FROM b.full_at - statement_timestamp())::float8
"""
_GIVE_BACK = "UPDATE rate_buckets SET full_at = full_at - $2 * interval '1 second' WHERE key = $1"
_PRUNE = "DELETE FROM rate_buckets WHERE full_at <= statement_timestamp()"


def digest(key: str) -> bytes:
    """The stored key: fixed in size, and no address or subject kept in clear."""
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


@dataclass
class _Asked:
    """The takes waiting for one key: answered in the order they came."""

    digest: bytes
    token_s: float
    burst: int
    waiters: list[asyncio.Future[float]] = field(default_factory=list)


class SharedBuckets:
    """The `rate_buckets` table, through a small asyncpg pool of its own, opened when first
    used. Takes are batched: while one statement is out, the takes that arrive wait for the
    next, which carries them all (each key once, with how many tokens it is asked for; up to
    BATCH_KEYS keys, the rest in the statement after), so a process sends one take statement
    at a time whatever its load. The pool's connections
    commit without waiting for the disk (`synchronous_commit=off`: a crash may forget the
    last takes, as UNLOGGED forgets them all)."""

    def __init__(self, database_url: str, pool_size: int) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._asked: dict[str, _Asked] = {}
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0  # take statements sent so far
        self.out = False  # whether one is out now (the `sent`th)

    async def open(self) -> None:
        """Open the pool and its first connection now rather than on the first take."""
        await self._connections()

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=5,
                        command_timeout=10,
                        server_settings={
                            "synchronous_commit": "off",
                            "application_name": "gridflow rate limits",
                        },
                    )
        return self._pool

    async def take(self, key: str, token_s: float, burst: int) -> float:
        """Take one token from `key`'s bucket: 0 if given, else the seconds until one is
        back. A caller that stops waiting (its timeout) leaves the batch its token's worth."""
        asked = self._asked.get(key)
        if asked is None:
            asked = self._asked[key] = _Asked(digest(key), token_s, burst)
        answer: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        asked.waiters.append(answer)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="rate-limit-takes")
        return await answer

    async def _send(self) -> None:
        """Send the waiting takes, one statement at a time, until none are left."""
        while self._asked:
            batch = self._next_batch()
            self.sent += 1
            self.out = True
            try:
                answered = await self._take_all(sorted(batch.values(), key=lambda a: a.digest))
            except Exception as exc:
                for asked in batch.values():
                    for waiter in asked.waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                continue
            finally:
                self.out = False
            for asked in batch.values():
                taken, ahead_s = answered[asked.digest]
                wait = max(ahead_s - (asked.burst - 1) * asked.token_s, 0.001)
                for i, waiter in enumerate(asked.waiters):
                    if not waiter.done():
                        waiter.set_result(0.0 if i < taken else wait)

    def _next_batch(self) -> dict[str, _Asked]:
        """The waiting takes, up to BATCH_KEYS keys (the first to come): each key in a
        statement is looked up among the statement's others, so its cost grows with their
        square."""
        if len(self._asked) <= BATCH_KEYS:
            batch, self._asked = self._asked, {}
            return batch
        keys = list(itertools.islice(self._asked, BATCH_KEYS))
        return {key: self._asked.pop(key) for key in keys}

    async def _take_all(self, batch: list[_Asked]) -> dict[bytes, tuple[int, float]]:
        pool = await self._connections()
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                _TAKE,
                [a.digest for a in batch],
                [len(a.waiters) for a in batch],
                [a.token_s for a in batch],
                [a.burst for a in batch],
            )
        return {bytes(r[0]): (int(r[1]), float(r[2])) for r in rows}

    async def give_back(self, key: str, token_s: float) -> None:
        pool = await self._connections()
        async with pool.acquire() as conn:
            await conn.execute(_GIVE_BACK, digest(key), token_s)

    async def prune(self) -> int:
        """Delete the buckets that are full again; returns how many."""
        pool = await self._connections()
        async with pool.acquire() as conn:
            status = await conn.execute(_PRUNE)
        return int(status.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        sender, self._sender = self._sender, None
        await cancel(sender)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 2.0)
            except TimeoutError:
                pool.terminate()
