"""Audit checkpoints at city scale (by hand, never in CI): time and size for N cases.

    .venv/bin/python bench/checkpoints.py [--cases 100000]                         # SQLite
    .venv/bin/python bench/checkpoints.py --cases 1000000 --postgres URL           # PostgreSQL

URL is a PostgreSQL server's maintenance database (postgresql+asyncpg://user@127.0.0.1:PORT/
postgres); a fresh database is made on it and dropped after. Writes N synthetic cases straight
to the table (seq 1..12, a random head each), then measures in one run:
  1. the baseline: the one streamed query of (id, seq, head) in code-point order that every
     checkpoint reads, nothing computed;
  2. the first checkpoint (no previous one to compare with);
  3. a second one after 1 % of the cases moved on (their old head kept as an event, so the
     comparison looks them up) and 0.5 % were opened;
  4. `verify_checkpoints`: the newest checkpoint's leaves against today's cases;
  5. the stored leaves' size, and the process's peak memory.
Prints a table and writes it as JSON to bench/results/. Loops are bounded by N; all traffic goes
to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.cases.checkpoint_take import take  # noqa: E402
from app.cases.checkpoint_verify import verify_checkpoints  # noqa: E402
from app.cases.checkpoints import CheckpointKey, current_leaves  # noqa: E402
from app.models import AuditCheckpointLeaves, Case, CaseEvent  # noqa: E402
from app.platform.settings import Settings  # noqa: E402
from app.runtime import Runtime  # noqa: E402

START = datetime(2026, 10, 1, tzinfo=UTC)
BATCH = 5000


def case_row(rng: random.Random, at: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "category": "garbage_overflow",
        "grid_code": "33010600100101",
        "grid_set_version": 1,
        "status": "dispatched",
        "priority": 2,
        "escalation_level": 0,
        "lon": 120.15,
        "lat": 30.24,
        "seq": rng.randint(1, 12),
        "head_hash": rng.randbytes(32).hex(),
        "created_at": at,
        "updated_at": at,
    }


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timed(step: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await step()
    return time.perf_counter() - started, value


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--postgres", metavar="URL", default=None)
    args = parser.parse_args()
    n = max(1, min(args.cases, 2_000_000))
    rng = random.Random(15)
    admin = None
    name = f"gf_ckpt_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        fields: dict[str, Any] = {"data_dir": Path(tmp), "env": "test"}
        if args.postgres:
            from sqlalchemy.ext.asyncio import create_async_engine

            admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
            async with admin.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE {name}"))
            fields["db"] = {"url": args.postgres.rsplit("/", 1)[0] + "/" + name}
        runtime = Runtime(Settings(**fields))
        db = runtime.db
        try:
            await runtime.prepare_database()
            written = time.perf_counter()
            for start in range(0, n, BATCH):
                rows = [case_row(rng, START) for _ in range(min(BATCH, n - start))]
                async with db.transaction() as uow:
                    await uow.session.execute(insert(Case), rows)
            written = time.perf_counter() - written
            key = CheckpointKey(runtime.settings.audit_key())

            async def baseline() -> int:
                async with db.reader() as session:
                    return sum([1 async for _ in current_leaves(session)])

            result: dict[str, Any] = {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "database": "PostgreSQL" if args.postgres else "SQLite",
                "cases": n,
                "write_cases_s": written,
                "load_average": os.getloadavg()[0],
            }
            result["baseline_s"], _ = await timed(baseline)
            now = START + timedelta(days=1)
            result["first_s"], first = await timed(lambda: take(db, key, now, keep_leaves=24))
            # 1 % of the cases move on (their old head stays, as the event at the old seq);
            # 0.5 % more are opened.
            async with db.reader() as session:
                moved = list(
                    await session.execute(
                        select(Case.id, Case.seq, Case.head_hash).limit(max(1, n // 100))
                    )
                )
            async with db.transaction() as uow:
                s = uow.session
                events = [
                    {
                        "event_id": str(uuid.uuid4()),
                        "case_id": cid,
                        "seq": seq,
                        "type": "TaskOffered",
                        "version": 1,
                        "occurred_at": now,
                        "actor": "system",
                        "grid_code": "33010600100101",
                        "category": "garbage_overflow",
                        "data": {},
                        "prev_hash": None,
                        "hash": head,
                    }
                    for cid, seq, head in moved
                ]
                for i in range(0, len(events), BATCH):
                    await s.execute(insert(CaseEvent), events[i : i + BATCH])
                for cid, seq, _ in moved:
                    await s.execute(
                        update(Case)
                        .where(Case.id == cid)
                        .values(seq=seq + 1, head_hash=rng.randbytes(32).hex())
                    )
                opened = [case_row(rng, now) for _ in range(max(1, n // 200))]
                for i in range(0, len(opened), BATCH):
                    await s.execute(insert(Case), opened[i : i + BATCH])
            later = now + timedelta(hours=1)
            result["second_s"], second = await timed(lambda: take(db, key, later, keep_leaves=24))
            result["verify_s"], report = await timed(lambda: verify_checkpoints(db, key))
            async with db.reader() as session:
                stored = await session.scalar(
                    select(func.sum(func.length(AuditCheckpointLeaves.data))).where(
                        AuditCheckpointLeaves.checkpoint_id == second.id
                    )
                )
            result["faults"] = len(report.problems) + len(first.faults) + len(second.faults)
            result["leaves_bytes"] = int(stored or 0)
            result["bytes_per_case"] = int(stored or 0) / second.cases
            result["peak_rss_mb"] = peak_mb()
        finally:
            await db.dispose()
            if admin is not None:
                async with admin.connect() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                await admin.dispose()
    base = result["baseline_s"]
    print(f"{result['date']}  {result['machine']}  {result['database']}: {n} cases")
    print(f"load average at the start                {result['load_average']:8.2f}")
    print(f"baseline: stream (id, seq, head)          {base:8.2f} s")
    for label, field in (
        ("first checkpoint", "first_s"),
        ("second (1 % moved, 0.5 % new)", "second_s"),
        ("verify the newest against today", "verify_s"),
    ):
        took = result[field]
        print(f"{label:<40}  {took:8.2f} s  = {took / base:4.1f}× baseline")
    print(f"stored leaves                             {result['leaves_bytes'] / 2**20:8.1f} MB")
    print(f"  a case                                  {result['bytes_per_case']:8.1f} bytes")
    print(f"peak memory of the process                {result['peak_rss_mb']:8.0f} MB")
    print(f"faults found (must be 0)                  {result['faults']:8d}")
    out = (
        REPO
        / "bench"
        / "results"
        / f"checkpoints-{result['database'].lower()}-{n}-{datetime.now(UTC):%Y-%m-%d}.json"
    )
    out.write_text(json.dumps(result, indent=2))
    return 0 if result["faults"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
