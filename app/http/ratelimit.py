"""Rate limits: token buckets per principal and per client address.

Every client address has one budget over all its requests (checked in middleware, before any
work); each authenticated principal has a budget per kind of route (reports, worker actions,
sensor alerts, reads, administration), checked once the principal is known. An empty bucket
answers 429 `rate_limited` with `Retry-After` (seconds until a token is back). Buckets live in
the process: with N API processes a client may get up to N times the budget; the per-address
budget is the first line of defence, a proxy in front of the city's API the second.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import error_response
from app.platform.settings import Bucket


class TokenBuckets:
    """Many token buckets by key, the least recently used forgotten beyond `max_keys`."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
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


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(min(seconds, 86_400))))


class AddressLimit:
    """Pure ASGI middleware: one budget per client address over every HTTP request."""

    def __init__(
        self, app: ASGIApp, *, buckets: TokenBuckets, bucket: Bucket, trust_forwarded: bool
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.bucket = bucket
        self.trust_forwarded = trust_forwarded

    def address(self, scope: Scope) -> str:
        if self.trust_forwarded:
            for name, value in scope.get("headers", []):
                if name == b"x-forwarded-for":
                    return str(value.decode("latin-1")).split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(("/healthz", "/readyz")):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(f"addr:{self.address(scope)}", self.bucket)
        if wait:
            response = error_response(
                429,
                "rate_limited",
                "too many requests from this address; retry later",
                retry_after_s=math.ceil(wait),
            )
            response.headers["Retry-After"] = retry_after(wait)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
