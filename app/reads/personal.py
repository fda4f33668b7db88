"""What gridflow holds about one resident, for them to download; the log of staff reads of
personal data, for admins."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AccessRecord, Case, CaseEvent, Feedback, Photo, Report
from app.reads.common import resident_safe
from app.reads.schemas import (
    AccessEntry,
    AccessPage,
    PersonalCase,
    PersonalFeedback,
    PersonalPhoto,
    PersonalReport,
    ResidentData,
    TimelineEntry,
)

NOT_INCLUDED = [
    "Tokens are not stored: gridflow checks each one and keeps nothing of it.",
    "Photos are linked, not inlined: each link answers the photo's bytes to your token.",
    "Reports whose personal data was removed (on your request, or after the retention period) "
    "are no longer linked to you and are not listed.",
    "The case timelines show what residents see of them; workers' and operators' identifiers "
    "are theirs, not yours.",
]


async def resident_data(session: AsyncSession, resident_id: str, now: datetime) -> ResidentData:
    """The resident's reports with their photos, feedback and cases' public progress, in five
    queries however many reports there are."""
    reports = list(
        await session.scalars(
            select(Report)
            .where(Report.reporter_id == resident_id)
            .order_by(Report.created_at, Report.id)
        )
    )
    report_ids = [r.id for r in reports]
    case_ids = sorted({r.case_id for r in reports if r.case_id is not None})
    cases = {c.id: c for c in await session.scalars(select(Case).where(Case.id.in_(case_ids)))}
    timelines: dict[str, list[TimelineEntry]] = defaultdict(list)
    for e in await session.scalars(
        select(CaseEvent)
        .where(CaseEvent.case_id.in_(case_ids))
        .order_by(CaseEvent.case_id, CaseEvent.seq)
    ):
        timelines[e.case_id].append(
            TimelineEntry(
                cursor=e.id, type=e.type, occurred_at=e.occurred_at, data=resident_safe(e.data)
            )
        )
    photos: dict[str, list[PersonalPhoto]] = defaultdict(list)
    for p in await session.scalars(
        select(Photo).where(Photo.report_id.in_(report_ids)).order_by(Photo.created_at, Photo.id)
    ):
        assert p.report_id is not None
        photos[p.report_id].append(
            PersonalPhoto(
                id=p.id,
                url=f"/v1/photos/{p.id}",
                content_type=p.content_type,
                width=p.width,
                height=p.height,
                size_bytes=p.size_bytes,
                created_at=p.created_at,
            )
        )
    feedback: dict[str, list[PersonalFeedback]] = defaultdict(list)
    for f in await session.scalars(
        select(Feedback).where(Feedback.report_id.in_(report_ids)).order_by(Feedback.created_at)
    ):
        feedback[f.report_id].append(
            PersonalFeedback(
                satisfied=f.satisfied, score=f.score, comment=f.comment, created_at=f.created_at
            )
        )
    out = []
    for r in reports:
        case = cases.get(r.case_id) if r.case_id else None
        out.append(
            PersonalReport(
                id=r.id,
                category=r.category,
                description=r.description,
                address=r.address,
                location={"lat": r.lat, "lon": r.lon},
                location_sent={"lat": r.lat_in, "lon": r.lon_in, "crs": r.crs},
                location_coarsened=r.coarsened_at is not None,
                grid=r.grid_code,
                created_at=r.created_at,
                case=PersonalCase(
                    id=case.id,
                    status=case.status,
                    created_at=case.created_at,
                    closed_at=case.closed_at,
                    timeline=timelines[case.id],
                )
                if case
                else None,
                photos=photos[r.id],
                feedback=feedback[r.id],
            )
        )
    return ResidentData(
        subject=resident_id, generated_at=now, reports=out, not_included=NOT_INCLUDED
    )


async def access_page(
    session: AsyncSession,
    *,
    case_id: str | None,
    subject: str | None,
    since: datetime | None,
    after: int,
    limit: int,
) -> AccessPage:
    """Staff reads of personal data in the order recorded, after the entry `after`."""
    stmt = select(AccessRecord).where(AccessRecord.id > after)
    if case_id:
        stmt = stmt.where(AccessRecord.case_id == case_id)
    if subject:
        stmt = stmt.where(AccessRecord.subject == subject)
    if since is not None:
        stmt = stmt.where(AccessRecord.at >= since)
    rows = list(await session.scalars(stmt.order_by(AccessRecord.id).limit(limit)))
    items = [
        AccessEntry(
            id=r.id,
            at=r.at,
            role=r.role,
            subject=r.subject,
            case_id=r.case_id,
            report_id=r.report_id,
            what=r.what,
            ref=r.ref,
        )
        for r in rows
    ]
    return AccessPage(
        items=items, next_after=rows[-1].id if len(rows) == limit else None, limit=limit
    )
