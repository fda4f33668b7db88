"""The retention job on the injected clock: residents' personal data cleared once their case has
been closed for the configured period (at once after closing when they asked for erasure),
figures and histories unchanged, safe to run again and from two dispatchers at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from app.cases.events import EventType
from app.models import Case, CaseEvent, Photo, Report
from app.platform.db import Database
from app.privacy.retention import Retention
from tests.app.residents import (
    PHOTO,
    audit_problems,
    everything,
    feedback,
    file_report,
    resolve,
    stats,
)
from tests.conftest import Configured
from tests.harness import Harness

DAYS = 30
PRIVACY = {"retain_personal_days": DAYS, "coarsen_m": 200}


async def closed_report(h: Harness, resident: str, n: int, text: str) -> dict[str, object]:
    report = await file_report(h, resident, n, description=text, photo=PHOTO)
    await resolve(h, str(report["case_id"]))
    await feedback(h, resident, str(report["id"]), satisfied=True)
    await h.case_where(str(report["case_id"]), lambda c: c["status"] == "closed")
    return report


async def erased_records(h: Harness) -> list[tuple[str, str]]:
    async with h.runtime.db.reader() as s:
        rows = await s.execute(
            select(CaseEvent.case_id, CaseEvent.data).where(
                CaseEvent.type == EventType.PERSONAL_DATA_ERASED
            )
        )
        return sorted((case_id, data["reason"]) for case_id, data in rows)


async def test_personal_data_is_cleared_after_the_period_and_only_then(
    configured: Configured,
) -> None:
    async with configured(privacy=PRIVACY) as h:
        engine = h.runtime.engine
        assert engine is not None
        old = await closed_report(h, "resident-old", 0, "三天没人收垃圾")
        waiting = await file_report(h, "resident-wait", 1, description="还开着的案子")
        await h.offered_task(str(waiting["case_id"]))
        before = await stats(h)
        photo_files = [h.runtime.photos.path_for(sha, "png") for sha in await shas(h)]
        assert len(photo_files) == 1 and photo_files[0].exists()

        h.clock.advance(timedelta(days=DAYS - 1))
        assert (await engine.apply_retention()).reports == 0
        h.clock.advance(timedelta(days=2))
        run = await engine.apply_retention()
        assert run.reports == 1 and run.photos == 1
        assert not any(p.exists() for p in photo_files)

        left = await everything(h)
        assert "resident-old" not in left and "三天没人收垃圾" not in left
        assert "resident-wait" in left and "还开着的案子" in left  # its case is open
        async with h.runtime.db.reader() as s:
            report = await s.get(Report, old["id"])
            case = await s.get(Case, old["case_id"])
            assert report is not None and case is not None
            assert report.reporter_id is None and report.coarsened_at == h.clock.now()
            assert (case.lon, case.lat) == (report.lon, report.lat)  # both coarse, the same
            assert not list(await s.scalars(select(Photo).where(Photo.report_id == old["id"])))
        assert await erased_records(h) == [(str(old["case_id"]), "retention")]
        assert await audit_problems(h) == []
        assert await stats(h) == before
        # Again: nothing more to do, nothing recorded twice.
        assert (await engine.apply_retention()).reports == 0
        assert await erased_records(h) == [(str(old["case_id"]), "retention")]


async def shas(h: Harness) -> list[str]:
    async with h.runtime.db.reader() as s:
        return list(await s.scalars(select(Photo.sha256).where(Photo.report_id.is_not(None))))


async def test_an_erased_open_case_loses_its_location_as_soon_as_it_closes(
    configured: Configured,
) -> None:
    async with configured(privacy=PRIVACY, sla={"sweep_interval_s": 3600}) as h:
        engine = h.runtime.engine
        assert engine is not None
        report = await file_report(h, "resident-e", 0, description="门口堆满了")
        case_id = str(report["case_id"])
        r = await h.client.post("/v1/me/erase", headers=h.auth("resident", "resident-e"))
        assert r.json()["locations_coarsened"] == 0
        async with h.runtime.db.reader() as s:
            precise = await s.get(Report, report["id"])
            assert precise is not None and precise.coarsened_at is None
        await resolve(h, case_id)
        # Nobody can rate it now: the feedback window closes it.
        h.clock.advance(timedelta(seconds=h.settings.sla.feedback_window_s + 1))
        while await h.sweep():
            pass
        await h.case_where(case_id, lambda c: c["status"] == "closed")
        assert (await engine.apply_retention()).reports == 1  # not 30 days later: now
        async with h.runtime.db.reader() as s:
            coarse = await s.get(Report, report["id"])
            assert coarse is not None and coarse.coarsened_at is not None
            assert (coarse.lon, coarse.lat) != (precise.lon, precise.lat)
        assert await erased_records(h) == [(case_id, "request"), (case_id, "retention")]
        assert await audit_problems(h) == []


async def test_two_dispatchers_clear_each_report_once(configured: Configured) -> None:
    async with configured(privacy={**PRIVACY, "retention_batch": 2}) as h:
        reports = [await closed_report(h, f"resident-{n}", n, f"第{n}个") for n in range(5)]
        h.clock.advance(timedelta(days=DAYS + 1))
        other = Database(h.settings.database_url, audit_key=h.runtime.db.audit_key)
        try:
            jobs = [
                Retention(db, h.runtime.photos, h.settings.privacy) for db in (h.runtime.db, other)
            ]
            runs = await asyncio.gather(*(job.run(h.clock.now()) for job in jobs))
        finally:
            await other.dispose()
        assert sum(run.reports for run in runs) == 5
        assert await erased_records(h) == sorted((str(r["case_id"]), "retention") for r in reports)
        assert await audit_problems(h) == []
