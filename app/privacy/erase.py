"""Removing a resident's personal data while keeping each case's history and figures.

What counts as personal: who reported (the report's `reporter_id`, a resident's id as an
event's actor), what they wrote (the report's description and address, a feedback comment, the
comment a reopening carries), their photos, and the precise location they sent (the report's
coordinates, as sent and as WGS-84, the case's, and the CaseOpened event's). What stays: the
category, the grid, the times, the states, a verdict's satisfied and score, every event of the
timeline: so `/v1/stats` and the history read the same after as before.

On request (`erase_resident`) everything but the location goes at once; the location stays
while the case is open (its worker has to find the place, its arrival is checked against it)
and is coarsened once it has closed (at once if it has: `privacy.coarsen_m`; else by the next
retention run after it closes, app/privacy/retention.py). After the retention period every
report of a closed case is cleared the same way (`clear_reports`).

In the events, an erased field loses its value and its salt and keeps its commitment
(app/cases/audit.py), so the chain still verifies; each case touched gets one
`PersonalDataErased` event naming the fields (by event seq) and the report's data it removed.
Copies elsewhere are cleared too: the outbox rows that carry those events or the report's
ReportReceived (and its dead letter, if it had one), and the Idempotency-Key answers the
resident got or that show the case (a worker's task view). Photo files are deleted after the
commit, and only where no photo row still names the same bytes (`delete_unreferenced`).

Everything here runs in the caller's unit of work; the rows are locked (reports, then their
cases, each in id order), so a request and the retention job, or two dispatchers' jobs, cannot
clear one report twice.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.audit import ERASED_ACTOR, PERSONAL_KEYS, RESIDENT_ACTOR
from app.cases.events import EventType, append_case_event
from app.cases.states import CaseStatus, ReportSource
from app.models import Case, CaseEvent, Feedback, IdempotencyRecord, OutboxMessage, Photo, Report
from app.photos.store import EXTENSIONS, PhotoStore
from app.platform import topics
from app.platform.db import Database
from app.platform.uow import UnitOfWork
from app.privacy.location import coarsen

RETENTION_ACTOR = "system:retention"
WRITTEN_KEYS = PERSONAL_KEYS - {"lat", "lon"}  # what a resident wrote, in an event they made


@dataclass
class Erasure:
    """What one erasure or retention batch cleared."""

    reports: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    photos: list[tuple[str, str]] = field(default_factory=list)  # (sha256, extension) deleted
    fields: int = 0  # event fields erased
    coarsened: int = 0  # reports whose location was coarsened


async def erase_resident(
    uow: UnitOfWork, now: datetime, resident_id: str, *, coarsen_m: float
) -> Erasure:
    """Remove what gridflow holds about `resident_id` (see the module's docstring). Running it
    again finds nothing left to remove."""
    reports = list(
        await uow.session.scalars(
            select(Report)
            .where(Report.reporter_id == resident_id)
            .order_by(Report.id)
            .with_for_update()
        )
    )
    return await _clear(uow, now, reports, reason="request", coarsen_m=coarsen_m)


async def clear_reports(
    uow: UnitOfWork, now: datetime, reports: Sequence[Report], *, coarsen_m: float
) -> Erasure:
    """Retention: clear `reports` (locked by the caller; their cases closed) whole, the
    location coarsened."""
    return await _clear(uow, now, reports, reason="retention", coarsen_m=coarsen_m)


async def _clear(
    uow: UnitOfWork,
    now: datetime,
    reports: Sequence[Report],
    *,
    reason: str,
    coarsen_m: float,
) -> Erasure:
    done = Erasure()
    reports = [r for r in reports if r.source == ReportSource.RESIDENT]
    if not reports:
        return done
    session = uow.session
    case_ids = sorted({r.case_id for r in reports if r.case_id is not None})
    cases: dict[str, Case] = {}
    if case_ids:
        rows = await session.scalars(
            select(Case).where(Case.id.in_(case_ids)).order_by(Case.id).with_for_update()
        )
        cases = {c.id: c for c in rows}
    events: dict[str, list[CaseEvent]] = defaultdict(list)
    if case_ids:
        for event in await session.scalars(
            select(CaseEvent)
            .where(CaseEvent.case_id.in_(case_ids))
            .order_by(CaseEvent.case_id, CaseEvent.seq)
        ):
            events[event.case_id].append(event)
    report_ids = [r.id for r in reports]
    photos: dict[str, list[Photo]] = defaultdict(list)
    for photo in await session.scalars(select(Photo).where(Photo.report_id.in_(report_ids))):
        assert photo.report_id is not None
        photos[photo.report_id].append(photo)
    feedback: dict[str, list[Feedback]] = defaultdict(list)
    for verdict in await session.scalars(
        select(Feedback).where(Feedback.report_id.in_(report_ids))
    ):
        feedback[verdict.report_id].append(verdict)

    residents = {r.reporter_id for r in reports if r.reporter_id is not None}
    changed: dict[str, CaseEvent] = {}  # by event id: their outbox copies are cleared too
    for report in reports:
        case = cases.get(report.case_id) if report.case_id else None
        # The location goes once the case has closed (retention picks closed cases only).
        location = case is not None and case.status == CaseStatus.CLOSED
        removed = _clear_report(report, now, location=location, coarsen_m=coarsen_m)
        if location and case is not None and case.source_device_id is None:
            case.lon, case.lat = coarsen(case.lon, case.lat, coarsen_m)
        for verdict in feedback[report.id]:
            if verdict.comment is not None:
                verdict.comment = None
                removed.add("feedback_comment")
        if photos[report.id]:
            removed.add("photos")
            for photo in photos[report.id]:
                done.photos.append((photo.sha256, EXTENSIONS[photo.content_type]))
        done.reports.append(report.id)
        done.coarsened += "location" in removed
        if case is None:
            continue  # not dispatched yet: the case opens without the removed data
        erased: list[dict[str, Any]] = []
        for event in events[case.id]:
            names = _erase_event(event, report, location=location)
            if names:
                erased.append({"seq": event.seq, "fields": names})
                changed[event.event_id] = event
                done.fields += len(names)
        if removed or erased:
            append_case_event(
                uow,
                case,
                EventType.PERSONAL_DATA_ERASED,
                actor=ERASED_ACTOR if reason == "request" else RETENTION_ACTOR,
                now=now,
                data={
                    "reason": reason,
                    "report_id": report.id,
                    "removed": sorted(removed),
                    "erased": erased,
                },
            )
            if case.id not in done.cases:
                done.cases.append(case.id)
    if report_ids:
        await session.execute(delete(Photo).where(Photo.report_id.in_(report_ids)))
    await _clear_copies(session, changed, residents, set(cases))
    return done


def _clear_report(report: Report, now: datetime, *, location: bool, coarsen_m: float) -> set[str]:
    """Clear the report's own columns; which kinds of data were there."""
    removed: set[str] = set()
    if report.reporter_id is not None:
        report.reporter_id = None
        removed.add("reporter")
    if report.description:
        report.description = ""
        removed.add("description")
    if report.address is not None:
        report.address = None
        removed.add("address")
    report.erased_at = report.erased_at or now
    if location and report.coarsened_at is None:
        lon, lat = coarsen(report.lon, report.lat, coarsen_m)
        report.lon, report.lat = lon, lat
        report.lon_in, report.lat_in, report.crs = lon, lat, "wgs84"
        report.coarsened_at = now
        removed.add("location")
    return removed


def _erase_event(event: CaseEvent, report: Report, *, location: bool) -> list[str]:
    """Erase, in place, the personal fields of `event` that are the report's resident's or its
    location: a resident's id as the actor and what that resident wrote; the coordinates of an
    event about this report (CaseOpened) once `location`. The names erased."""
    names: list[str] = []
    data = dict(event.data)
    # A case holds one resident's report (residents' reports are not merged), so a resident
    # acting on it is that report's resident.
    by_resident = event.actor.startswith(RESIDENT_ACTOR)
    if by_resident:
        names.append("actor")
        names += [k for k in WRITTEN_KEYS if k in data]
    if location and data.get("report_id") == report.id:
        names += [k for k in ("lat", "lon") if k in data]
    if not names:
        return []
    commitments = {k: dict(v) for k, v in (event.commitments or {}).items()}
    for name in names:
        if name in commitments:
            commitments[name].pop("salt", None)
        if name != "actor":
            data.pop(name, None)
    if by_resident:
        event.actor = ERASED_ACTOR
    event.data = data
    if event.commitments is not None:
        event.commitments = commitments
    return sorted(names)


async def _clear_copies(
    session: AsyncSession,
    events: dict[str, CaseEvent],
    residents: Iterable[str],
    case_ids: set[str],
) -> None:
    """The same removal in the outbox rows that carry these events or the residents' reports,
    and no Idempotency-Key answer left that the residents got or that shows their cases."""
    actors = [f"{RESIDENT_ACTOR}{r}" for r in residents]
    if events:
        rows = await session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.topic == topics.CASE_EVENTS,
                OutboxMessage.key.in_(sorted({e.case_id for e in events.values()})),
            )
        )
        for row in rows:
            event = events.get(str(row.payload.get("event_id")))
            if event is not None:
                row.payload = {**row.payload, "actor": event.actor, "data": event.data}
    if actors:
        # A report's ReportReceived, and the dead letter that copies it if it kept failing
        rows = await session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.topic.in_([topics.INTAKE, topics.DEAD_LETTER]),
                OutboxMessage.payload["actor"].as_string().in_(actors),
            )
        )
        for row in rows:
            payload = {**row.payload, "actor": ERASED_ACTOR}
            original = payload.get("data", {}).get("original")
            if isinstance(original, dict) and "actor" in original:
                payload["data"] = {
                    **payload["data"],
                    "original": {**original, "actor": ERASED_ACTOR},
                }
            row.payload = payload
    conditions = []
    if actors:
        conditions.append(IdempotencyRecord.principal.in_(actors))
    if case_ids:
        conditions.append(IdempotencyRecord.body["case_id"].as_string().in_(sorted(case_ids)))
    if conditions:
        await session.execute(delete(IdempotencyRecord).where(or_(*conditions)))


async def delete_unreferenced(
    db: Database, store: PhotoStore, photos: Sequence[tuple[str, str]]
) -> int:
    """After the commit that deleted their rows: delete the photos' files that no photo row
    names any more (the same bytes sent by someone else stay). How many were deleted."""
    wanted = sorted(set(photos))
    if not wanted:
        return 0
    async with db.reader() as session:
        kept = set(
            await session.scalars(
                select(Photo.sha256).where(Photo.sha256.in_([sha for sha, _ in wanted]))
            )
        )
    deleted = 0
    for sha, extension in wanted:
        if sha not in kept and await asyncio.to_thread(store.delete, sha, extension):
            deleted += 1
    return deleted
