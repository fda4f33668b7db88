"""Bulk rows (app/platform/bulk.py): COPY on PostgreSQL from 16 rows, INSERT below, and the
same rows either way, inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select

from app.cases.states import CaseStatus
from app.models import Case, OutboxMessage
from app.platform.bulk import COPY_FROM, insert_rows
from tests.harness import Harness

_CASES = cast(Table, Case.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _case(i: int) -> dict[str, Any]:
    # escalation_level and seq left out: their defaults (0) are filled in
    return {
        "id": str(uuid.uuid4()),
        "category": "garbage_overflow",
        "grid_code": "330106001001",
        "grid_set_version": 1,
        "status": CaseStatus.DISPATCHED,
        "priority": 3,
        "lon": 120.15 + i / 1000,
        "lat": 30.25,
        "source_device_id": None,
        "assignee_worker_id": None,
        "department": None,
        "paused_at": None,
        "pause_kind": None,
        "head_hash": None,
        "created_at": NOW + timedelta(seconds=i),
        "updated_at": NOW,
        "resolved_at": None,
        "closed_at": None,
    }


@pytest.mark.parametrize("n", [3, COPY_FROM + 4])
async def test_rows_come_back_as_written_with_defaults_filled(h: Harness, n: int) -> None:
    rows = [_case(i) for i in range(n)]
    outbox = [
        {"topic": "t.bulk", "key": f"k{i}", "payload": {"n": i, "名": "西湖"}, "created_at": NOW}
        for i in range(n)
    ]
    async with h.runtime.db.transaction() as uow:
        await insert_rows(uow.session, _CASES, rows)
        await insert_rows(uow.session, _OUTBOX, outbox)
    async with h.runtime.db.reader() as s:
        cases = {
            c.id: c
            for c in await s.scalars(select(Case).where(Case.id.in_([r["id"] for r in rows])))
        }
        sent = list(
            await s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.topic == "t.bulk")
                .order_by(OutboxMessage.id)
            )
        )
    assert len(cases) == n
    for row in rows:
        case = cases[row["id"]]
        assert (case.status, case.escalation_level, case.seq) == (CaseStatus.DISPATCHED, 0, 0)
        assert case.created_at == row["created_at"] and case.lon == row["lon"]
    assert [m.payload for m in sent] == [o["payload"] for o in outbox]
    assert all(m.sent_at is None and m.id is not None for m in sent)


async def test_rows_are_part_of_the_transaction(h: Harness) -> None:
    rows = [_case(i) for i in range(COPY_FROM + 1)]
    with pytest.raises(RuntimeError, match="rolled back"):
        async with h.runtime.db.transaction() as uow:
            await insert_rows(uow.session, _CASES, rows)
            raise RuntimeError("rolled back")
    async with h.runtime.db.reader() as s:
        found = await s.scalar(
            select(func.count()).select_from(Case).where(Case.id.in_([r["id"] for r in rows]))
        )
    assert found == 0
