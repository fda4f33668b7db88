"""The set of known category codes, cached: intake checks it on every report.

Categories change rarely; an unknown code triggers one reload (at most once a second), so a new
category is seen at once and a stream of bad codes cannot hammer the database.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Category


class CategoryCache:
    def __init__(self, min_reload_s: float = 1.0) -> None:
        self._codes: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._min_reload_s = min_reload_s

    async def load(self, session: AsyncSession) -> frozenset[str]:
        self._codes = frozenset(await session.scalars(select(Category.code)))
        self._loaded_at = time.monotonic()
        return self._codes

    async def known(self, session: AsyncSession, code: str) -> bool:
        if code in self._codes:
            return True
        if time.monotonic() - self._loaded_at >= self._min_reload_s:
            await self.load(session)
        return code in self._codes

    @property
    def codes(self) -> frozenset[str]:
        return self._codes
