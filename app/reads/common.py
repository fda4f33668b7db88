"""Pieces every read model uses: grids with their path, timelines, photo links, what a
resident may see of an event."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CaseEvent, Photo, SlaTimer
from app.reads.schemas import Deadlines, GridPathItem, GridRead, TimelineEntry
from dispatch.sla_state import due_times
from geo import GridIndex

# What a resident may see of an event's data: progress, never other people's identifiers.
RESIDENT_FIELDS = frozenset(
    {
        "worker_name",
        "note",
        "clock",
        "due_at",
        "escalation_level",
        "satisfied",
        "score",
        "reason",
        "on_site_due_at",
        "close_due_at",
        "category",
        "grid",
        "accept_due_at",
    }
)


def resident_safe(data: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in data.items() if k in RESIDENT_FIELDS}


def public_actor(actor: str) -> str:
    """Who acted, as the live feed shows it: staff and devices by id, residents only as
    "resident" (the wall screen needs the role, not the person)."""
    return "resident" if actor.startswith("resident:") else actor


def report_links(report_id: str) -> dict[str, str]:
    base = f"/v1/reports/{report_id}"
    return {"self": base, "events": f"{base}/events", "feedback": f"{base}/feedback"}


def grid_read(index: GridIndex | None, code: str) -> GridRead:
    if index is None:
        return GridRead(code=code, name=code, path=[])
    grid = index.get(code)
    return GridRead(
        code=code,
        name=grid.name if grid else code,
        path=[
            GridPathItem(code=g.code, name=g.name, level=g.level.value) for g in index.path(code)
        ],
    )


async def photo_urls(session: AsyncSession, which: ColumnElement[bool]) -> list[str]:
    ids = await session.scalars(select(Photo.id).where(which).order_by(Photo.created_at, Photo.id))
    return [f"/v1/photos/{i}" for i in ids]


async def timers_of(session: AsyncSession, case_ids: Sequence[str]) -> dict[str, list[SlaTimer]]:
    """The cases' timer rows in id order, in one query."""
    out: dict[str, list[SlaTimer]] = defaultdict(list)
    if case_ids:
        rows = await session.scalars(
            select(SlaTimer).where(SlaTimer.case_id.in_(case_ids)).order_by(SlaTimer.id)
        )
        for t in rows:
            out[t.case_id].append(t)
    return out


def deadlines(timers: Sequence[SlaTimer]) -> Deadlines:
    due = due_times(timers)
    return Deadlines(
        accept_due_at=due.accept_due_at,
        on_site_due_at=due.on_site_due_at,
        close_due_at=due.close_due_at,
    )


async def timeline(
    session: AsyncSession, case_id: str, *, for_resident: bool
) -> list[TimelineEntry]:
    rows = await session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
    )
    return [
        TimelineEntry(
            cursor=r.id,
            type=r.type,
            occurred_at=r.occurred_at,
            data=resident_safe(r.data) if for_resident else r.data,
        )
        for r in rows
    ]
