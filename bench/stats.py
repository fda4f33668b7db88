"""Figures benchmark (by hand, never in CI): `/v1/stats` over a large synthetic history.

    .venv/bin/python bench/stats.py [--cases 50000]                             # SQLite
    deploy/local/with-services.sh .venv/bin/python bench/stats.py --postgres    # PostgreSQL

Builds, in a fresh database with the demo city, a month of closed and open cases (one or two
offers each, resolutions, reopenings, close breaches, feedback) written straight to the tables,
then measures in one run:
  1. the baseline: reading the same rows the figures need (cases, tasks, four kinds of case
     event, feedback of the range) with plain SELECTs, nothing computed;
  2. `app.cases.stats.compute` for the total, and grouped by street and by grid;
  3. its peak Python memory (tracemalloc).
Prints a table and writes it as JSON to bench/results/. Every loop is bounded in count; all
traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.cases import stats  # noqa: E402
from app.models import Case, CaseEvent, Feedback, Report, Task, Worker  # noqa: E402
from app.platform.settings import Settings  # noqa: E402
from app.runtime import Runtime  # noqa: E402

PG_URL = "postgresql+asyncpg://gridflow@127.0.0.1:55432/"
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30


def history(units: list[str], workers: dict[str, list[str]], n: int, seed: int = 5) -> Any:
    """Rows for `n` cases: (cases, reports, tasks, events, feedback)."""
    rng = random.Random(seed)
    categories = ["garbage_overflow", "street_vending", "illegal_parking", "other"]
    cases, reports, tasks, events, feedback = [], [], [], [], []
    for i in range(n):
        cid, grid = str(uuid.uuid4()), rng.choice(units)
        opened = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        closed = rng.random() < 0.8
        category = rng.choice(categories)
        cases.append(
            {
                "id": cid,
                "category": category,
                "grid_code": grid,
                "grid_set_version": 1,
                "status": "closed" if closed else "accepted",
                "priority": 3,
                "escalation_level": 0,
                "lon": 120.2,
                "lat": 30.25,
                "seq": 0,
                "created_at": opened,
                "updated_at": opened,
                "closed_at": opened + timedelta(seconds=rng.uniform(600, 86400))
                if closed
                else None,
            }
        )
        rid = str(uuid.uuid4())
        reports.append(
            {
                "id": rid,
                "source": "resident",
                "reporter_id": f"r-{i}",
                "category": category,
                "description": "",
                "lon": 120.2,
                "lat": 30.25,
                "crs": "wgs84",
                "lon_in": 120.2,
                "lat_in": 30.25,
                "grid_code": grid,
                "grid_set_version": 1,
                "case_id": cid,
                "created_at": opened,
            }
        )
        offers = 2 if rng.random() < 0.15 else 1
        for k in range(offers):
            offered = opened + timedelta(seconds=5 + k * 60)
            accepted = k == offers - 1
            tasks.append(
                {
                    "id": str(uuid.uuid4()),
                    "case_id": cid,
                    "worker_id": rng.choice(workers[grid]),
                    "status": "resolved"
                    if accepted and closed
                    else "accepted"
                    if accepted
                    else "declined",
                    "offered_at": offered,
                    "accept_due_at": offered + timedelta(minutes=10),
                    "accepted_at": offered + timedelta(seconds=30) if accepted else None,
                    "arrived_at": offered + timedelta(seconds=600) if accepted else None,
                }
            )
        kinds = ["CaseResolved"] if closed else []
        if closed and rng.random() < 0.05:
            kinds.append("CaseReopened")
        if rng.random() < 0.1:
            kinds.append("SlaBreached")
        for seq, kind in enumerate(kinds, start=1):
            events.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "case_id": cid,
                    "seq": seq,
                    "type": kind,
                    "version": 1,
                    "occurred_at": opened,
                    "actor": "system:bench",
                    "grid_code": grid,
                    "category": category,
                    "data": {"clock": "close"} if kind == "SlaBreached" else {},
                }
            )
        if closed and rng.random() < 0.7:
            feedback.append(
                {
                    "id": str(uuid.uuid4()),
                    "report_id": rid,
                    "case_id": cid,
                    "satisfied": rng.random() < 0.9,
                    "score": 5,
                    "created_at": opened + timedelta(hours=1),
                }
            )
    return cases, reports, tasks, events, feedback


async def timed(action: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        best = min(best, time.perf_counter() - started)
    return best


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    n = min(args.cases, 500_000)
    with tempfile.TemporaryDirectory() as tmp:
        fields: dict[str, Any] = {"data_dir": Path(tmp), "env": "test"}
        if args.postgres:
            from sqlalchemy.ext.asyncio import create_async_engine

            name = f"gf_stats_{uuid.uuid4().hex[:8]}"
            admin = create_async_engine(PG_URL + "postgres", isolation_level="AUTOCOMMIT")
            async with admin.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE {name}"))
            fields["db"] = {"url": PG_URL + name}
        runtime = Runtime(Settings(**fields))
        await runtime.prepare_database()
        index = runtime.grids.require()
        units = [g.code for g in index.units]
        workers: dict[str, list[str]] = {}
        async with runtime.db.reader() as session:
            for w in await session.scalars(select(Worker).where(Worker.department.is_(None))):
                workers.setdefault(w.grid_code, []).append(w.id)
        rows = history(units, workers, n)
        async with runtime.db.transaction() as uow:
            session = uow.session
            for model, batch in zip((Case, Report, Task, CaseEvent, Feedback), rows, strict=True):
                for i in range(0, len(batch), 5000):
                    await session.execute(insert(model), batch[i : i + 5000])
        end = START + timedelta(days=DAYS)

        async def baseline() -> None:
            async with runtime.db.reader() as session:
                in_range = (Case.created_at >= START) & (Case.created_at < end)
                ids = select(Case.id).where(in_range)
                await session.execute(select(Case.__table__).where(in_range))
                await session.execute(select(Task.__table__).where(Task.case_id.in_(ids)))
                await session.execute(
                    select(CaseEvent.case_id, CaseEvent.type, CaseEvent.data).where(
                        CaseEvent.case_id.in_(ids)
                    )
                )
                await session.execute(
                    select(Feedback.case_id, Feedback.satisfied).where(Feedback.case_id.in_(ids))
                )

        def figures(by: stats.GroupBy | None) -> Any:
            async def run() -> None:
                async with runtime.db.reader() as session:
                    await stats.compute(session, start=START, end=end, by=by, index=index)

            return run

        result: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "database": "PostgreSQL" if args.postgres else "SQLite",
            "cases": n,
            "tasks": len(rows[2]),
            "events": len(rows[3]),
            "feedback": len(rows[4]),
            "baseline_s": await timed(baseline),
        }
        for by in (None, "street", "grid"):
            result[f"compute_{by or 'total'}_s"] = await timed(figures(by))
        tracemalloc.start()
        await figures("grid")()
        result["compute_grid_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        await runtime.db.dispose()
    base = result["baseline_s"]
    print(
        f"{result['date']}  {result['machine']}  {result['database']}: {n} cases, "
        f"{result['tasks']} tasks, {result['events']} events, {result['feedback']} verdicts"
    )
    print(f"baseline: read the rows              {base:8.2f} s")
    for by in ("total", "street", "grid"):
        took = result[f"compute_{by}_s"]
        print(f"figures ({by:<6})                   {took:8.2f} s  = {took / base:4.1f}× baseline")
    print(f"peak Python memory (by grid)         {result['compute_grid_peak_mb']:8.1f} MB")
    out = (
        REPO
        / "bench"
        / "results"
        / f"stats-{result['database'].lower()}-{datetime.now(UTC):%Y-%m-%d}.json"
    )
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
