"""Rate-limit buckets: in the process, or one set shared by every API process in PostgreSQL.

`Limiter.take(key, bucket)` answers 0 (a token was taken) or the seconds until one is back.
Where the buckets live is `limits.store` (`LimitSettings.shared`):

- **process** (the embedded default, SQLite): `TokenBuckets`, a dictionary in the process;
  N API processes allow N budgets.
- **database** (`auto` on PostgreSQL): `SharedBuckets`, one row of `rate_buckets` per key (see
  `app.models.RateBucket`), taken by one atomic `INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING` on a connection of the limiter's own small pool; the takes that arrive while one
  is out go together in the next (one statement, each key once). It is its own transaction,
  never part of a request's unit of work: a take commits at once, waits on no request's locks
  and is never rolled back with a request. The buckets run on the database's clock
  (`statement_timestamp()`), so API hosts whose clocks disagree still share one budget.

The shared store must never stop intake (a report is limited, never lost to the limiter):

- A take waits at most `limits.store_timeout_s`. One that times out, cannot connect or fails
  is answered by this process's own buckets instead (open, to the per-process budget: what
  the process store gives), counted (`gridflow_rate_limit_store_failures_total{reason}`) and
  logged: a warning when the trouble starts (at most one a minute), an info line when the
  store answers again.
  Slow: until the statement a take timed out on is back, takes go to the process's buckets
  without waiting, then to the store again (a timed-out take still spends its token there).
  Unreachable or failing: the process's buckets for `limits.store_retry_s`, then the next
  take tries again. Either way an outage costs a request at most one timeout's wait, most
  requests none.
- A refusal is remembered in the process until the refused key has a token again, so a flood
  from one address or principal costs the database about two writes per token its budget
  gives back (one allowed, one refused) in each process, not one per request.

Pruning: a bucket whose `full_at` has passed is full, like a missing row, so every API process
deletes such rows every `limits.prune_interval_s`. The table holds the keys that spent tokens
within their refill time (burst / rate: 15 s for an address, 60 s for a resident's reports,
with the default budgets).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import make_url

from app.platform.errors import DRIVER_DOWN
from app.platform.settings import Bucket, LimitSettings

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0  # at most one warning a minute for a store that comes and goes
MAX_KEYS = 100_000  # keys remembered in the process (buckets, refusals), least recent first out


class TokenBuckets:
    """Many token buckets by key, the least recently used forgotten beyond `max_keys`."""

    def __init__(
        self, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, bucket: Bucket) -> float:
        """Take one token; returns 0 if allowed, else the seconds until one is available."""
        now = self.clock()
        rate = bucket.per_minute / 60.0
        tokens, updated = self._buckets.get(key, (float(bucket.burst), now))
        tokens = min(float(bucket.burst), tokens + (now - updated) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate if rate > 0 else math.inf

    def give_back(self, key: str, bucket: Bucket) -> None:
        """Return one token taken from `key` (never beyond the burst)."""
        found = self._buckets.get(key)
        if found is not None:
            tokens, updated = found
            self._buckets[key] = (min(float(bucket.burst), tokens + 1.0), updated)


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
    next, which carries them all (each key once, with how many tokens it is asked for), so a
    process sends one take statement at a time whatever its load. The pool's connections
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
            batch, self._asked = self._asked, {}
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
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 2.0)
            except TimeoutError:
                pool.terminate()


def _reason(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):  # before OSError, of which it is a kind
        return "timeout"
    return "unreachable" if isinstance(exc, DRIVER_DOWN) else "error"


class Limiter:
    """The process's rate limits (one per `Runtime`): `take` and `give_back` by key, on the
    store `settings.store` names (see the module's docstring)."""

    def __init__(
        self,
        settings: LimitSettings,
        database_url: str,
        *,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.local = TokenBuckets(clock=clock)
        self.shared: SharedBuckets | None = (
            SharedBuckets(database_url, settings.store_pool_size)
            if settings.shared(database_url)
            else None
        )
        self._on_failure = on_failure
        self._refused: OrderedDict[str, float] = OrderedDict()  # key -> when a token is back
        self._local_until = -math.inf  # the process's buckets stand in until then
        self._failing = False
        self._warned = False
        self._quiet_until = -math.inf  # no new warning before then
        self._stalled: int | None = None  # the statement a take timed out on, while it is out
        self._pruning: asyncio.Task[None] | None = None

    def _store(self) -> SharedBuckets | None:
        """The shared store, unless there is none, it failed less than store_retry_s ago, or
        the statement a take timed out on is still out."""
        shared = self.shared
        if shared is None or self.clock() < self._local_until:
            return None
        if self._stalled is not None:
            if shared.out and shared.sent == self._stalled:
                return None
            self._stalled = None
        return shared

    async def take(self, key: str, bucket: Bucket) -> float:
        """Take one token from `key`'s bucket: 0 if given, else the seconds until one is."""
        store = self._store()
        if store is None:
            return self.local.take(key, bucket)
        now = self.clock()
        back = self._refused.get(key)
        if back is not None:
            if now < back:
                return back - now
            del self._refused[key]
        try:
            async with asyncio.timeout(self.settings.store_timeout_s):
                wait = await store.take(key, 60.0 / bucket.per_minute, bucket.burst)
        except Exception as exc:
            self._failed(exc)
            return self.local.take(key, bucket)
        self._answered()
        if not wait:
            return 0.0
        self._refused[key] = now + wait
        self._refused.move_to_end(key)
        if len(self._refused) > MAX_KEYS:
            self._refused.popitem(last=False)
        return wait

    async def give_back(self, key: str, bucket: Bucket) -> None:
        """Return one token `take` took from `key` (for a request refused afterwards as it
        would have been before the limit was checked)."""
        self._refused.pop(key, None)
        store = self._store()
        if store is None:
            self.local.give_back(key, bucket)
            return
        try:
            async with asyncio.timeout(self.settings.store_timeout_s):
                await store.give_back(key, 60.0 / bucket.per_minute)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A take the store did not answer. Slow (a timeout): the process's buckets answer
        until its statement in flight is back. Unreachable or failing: for store_retry_s."""
        reason = _reason(exc)
        if self._on_failure is not None:
            self._on_failure(reason)
        if reason != "timeout":
            self._local_until = self.clock() + self.settings.store_retry_s
        elif self.shared is not None and self.shared.out:
            self._stalled = self.shared.sent
        if not self._failing:
            self._failing = True
            now = self.clock()
            if now < self._quiet_until:  # a store that keeps coming and going: the metric says
                return
            self._quiet_until = now + WARN_EVERY_S
            self._warned = True
            then = (
                "until it answers"
                if reason == "timeout"
                else f"asking it again every {self.settings.store_retry_s:g} s"
            )
            log.warning(
                "rate limits: the shared store failed (%s: %s%s); this process's own "
                "buckets limit requests, %s",
                reason,
                type(exc).__name__,
                f", {exc}" if str(exc) else f" after {self.settings.store_timeout_s:g} s",
                then,
            )

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            if self._warned:
                self._warned = False
                log.info("rate limits: the shared store answers again")

    def start(self) -> None:
        """While this process serves requests: open the shared store's first connection
        (so the first request does not wait for it) and prune the buckets."""
        if self.shared is not None and self._pruning is None:
            self._pruning = asyncio.create_task(self._prune_forever(), name="rate-limit-prune")

    async def prune(self) -> int:
        """Delete the shared buckets that are full again (none without a shared store)."""
        if self.shared is None:
            return 0
        async with asyncio.timeout(10):
            return await self.shared.prune()

    async def _prune_forever(self) -> None:
        assert self.shared is not None
        try:
            await self.shared.open()
        except Exception as exc:  # the first take will try again
            log.info("rate limits: the shared store is not reachable yet (%s)", exc)
        while True:
            await asyncio.sleep(self.settings.prune_interval_s)
            try:
                deleted = await self.prune()
            except Exception as exc:  # an outage must not end the pruning
                log.warning("rate limits: could not prune (%s: %s)", type(exc).__name__, exc)
            else:
                log.debug("rate limits: pruned %d full buckets", deleted)

    async def close(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
            self._pruning = None
        if self.shared is not None:
            await self.shared.close()
