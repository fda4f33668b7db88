"""Overload is a 503 with Retry-After, never a 500: every database connection busy for the
pool's whole timeout means nothing was written and the client should come back."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.http import errors


async def test_a_pool_timeout_answers_503_overloaded(tmp_path: Any) -> None:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path}/pool.db", pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    app = FastAPI()
    errors.install(app)

    @app.get("/busy")
    async def busy() -> dict[str, int]:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"ok": 1}

    held = await engine.connect()  # the pool's only connection, held elsewhere
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/busy")
    finally:
        await held.close()
        await engine.dispose()
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "overloaded" and r.headers["Retry-After"] == "1"
