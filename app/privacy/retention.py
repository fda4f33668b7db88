"""The retention job: residents' personal data removed once it is no longer needed.

A resident's report is cleared (app/privacy/erase.py `clear_reports`: their id, description,
address, photos and feedback comments removed, the location coarsened, the events' personal
fields erased, one PersonalDataErased event recorded) once its case has been closed for
`privacy.retain_personal_days`, or as soon as it has closed when the resident asked for erasure
while it was open. Run by the engine every `privacy.retention_interval_s`, in batches of
`privacy.retention_batch` reports, each batch one transaction whose photo files are deleted
after it commits; the access log's entries older than `privacy.access_log_keep_days` go too.

Safe to run again and from several dispatchers at once: a cleared report is marked
(`coarsened_at`) in its batch's transaction and never picked again, and on PostgreSQL each
batch takes its reports with `FOR UPDATE SKIP LOCKED`, so two jobs clear different reports.
A report whose case never opened (its message dead-lettered) is left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.states import CaseStatus
from app.models import AccessRecord, Case, Report
from app.photos.store import PhotoStore
from app.platform.db import Database
from app.platform.settings import PrivacySettings
from app.privacy.erase import clear_reports, delete_unreferenced

log = logging.getLogger(__name__)
ACCESS_CHUNK = 5000


@dataclass(frozen=True)
class RetentionRun:
    reports: int  # reports cleared
    photos: int  # photo files deleted
    access_records: int  # access log entries deleted


class Retention:
    def __init__(self, db: Database, store: PhotoStore, settings: PrivacySettings) -> None:
        self.db = db
        self.store = store
        self.settings = settings

    async def run(self, now: datetime) -> RetentionRun:
        """Clear every report that is due, batch by batch, then prune the access log."""
        s = self.settings
        cutoff = now - timedelta(days=s.retain_personal_days)
        reports = photos = 0
        while True:
            async with self.db.transaction() as uow:
                due = await _due(uow.session, cutoff, s.retention_batch)
                done = await clear_reports(uow, now, due, coarsen_m=s.coarsen_m)
            photos += await delete_unreferenced(self.db, self.store, done.photos)
            reports += len(due)
            if len(due) < s.retention_batch:
                break
        pruned = await self._prune_access_log(now - timedelta(days=s.access_log_keep_days))
        if reports or pruned:
            log.info(
                "retention: cleared %d reports (%d photo files), pruned %d access log entries",
                reports,
                photos,
                pruned,
            )
        return RetentionRun(reports, photos, pruned)

    async def _prune_access_log(self, before: datetime) -> int:
        total = 0
        while True:
            async with self.db.transaction() as uow:
                ids = list(
                    await uow.session.scalars(
                        select(AccessRecord.id)
                        .where(AccessRecord.at < before)
                        .order_by(AccessRecord.id)
                        .limit(ACCESS_CHUNK)
                    )
                )
                if ids:
                    await uow.session.execute(delete(AccessRecord).where(AccessRecord.id.in_(ids)))
            total += len(ids)
            if len(ids) < ACCESS_CHUNK:
                return total


# Spelled as in the partial index's predicate (app/models.py), not as a bound parameter: the
# planner can use the index only for a predicate it can see implies the index's.
_RESIDENTS_KEPT = text("reports.source = 'resident' AND reports.coarsened_at IS NULL")


async def _due(session: AsyncSession, cutoff: datetime, limit: int) -> list[Report]:
    """Up to `limit` reports to clear, locked (skipping those another job holds): first those
    of cases closed before `cutoff` (a report is older than its case's closing, so only
    reports received before it are looked at), then erased ones whose case has closed."""
    closed = (Case.id == Report.case_id) & (Case.status == CaseStatus.CLOSED)
    by_age = (
        select(Report)
        .join(Case, closed)
        .where(_RESIDENTS_KEPT, Report.created_at < cutoff, Case.closed_at < cutoff)
        .order_by(Report.created_at, Report.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Report)
    )
    due = list(await session.scalars(by_age))
    if len(due) < limit:
        erased = (
            select(Report)
            .join(Case, closed)
            .where(
                Report.erased_at.is_not(None),
                Report.coarsened_at.is_(None),
                Report.id.not_in([r.id for r in due]),
            )
            .order_by(Report.erased_at, Report.id)
            .limit(limit - len(due))
            .with_for_update(skip_locked=True, of=Report)
        )
        due += list(await session.scalars(erased))
    return due
