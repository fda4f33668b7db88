"""Rate-limit buckets: in the process, or one set shared by every API process in PostgreSQL.

`Limiter.take(key, bucket)` answers 0 (a token was taken) or the seconds until one is back.
Where the buckets live is `limits.store` (`LimitSettings.shared`):

- **process** (the embedded default, SQLite): `TokenBuckets`, a dictionary in the process;
  N API processes allow N budgets.
- **database** (`auto` on PostgreSQL): `SharedBuckets` (app/platform/shared_buckets.py), one
  row of `rate_buckets` per key (see `app.models.RateBucket`), taken by one atomic `INSERT ...
  ON CONFLICT DO UPDATE ... RETURNING` on a connection of the limiter's own small pool; the
  takes that arrive while one is out go together in the next (one statement, each key once,
  up to 256 keys). It is its own transaction,
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
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from app.platform.errors import DRIVER_DOWN
from app.platform.settings import Bucket, LimitSettings
from app.platform.shared_buckets import SharedBuckets
from app.platform.shutdown import cancel

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
        pruning, self._pruning = self._pruning, None
        await cancel(pruning)
        if self.shared is not None:
            await self.shared.close()
