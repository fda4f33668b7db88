"""Writing an accepted report: all its rows or none, in one statement on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.intake.service import Location, NewReport, prepare_report
from app.intake.write import write_submission
from app.models import IdempotencyRecord, OutboxMessage, Photo, Report
from app.photos.store import check_photo
from app.platform import topics
from tests.harness import Harness, png_bytes


async def _counts(h: Harness) -> dict[str, int]:
    async with h.runtime.db.reader() as s:
        return {
            "reports": await s.scalar(select(func.count()).select_from(Report)) or 0,
            "photos": await s.scalar(select(func.count()).select_from(Photo)) or 0,
            "intake": await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.topic == topics.INTAKE)
            )
            or 0,
            "keys": await s.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0,
        }


async def _submission(h: Harness, photos: int = 0) -> Any:
    rt = h.runtime
    centre = rt.grids.require().units[0].geometry.representative_point()
    checked = [
        check_photo(png_bytes(), name=f"p{i}.png", max_bytes=1 << 20, max_pixels=1 << 22)
        for i in range(photos)
    ]
    return await prepare_report(
        rt.db,
        rt.grids,
        rt.categories,
        rt.clock,
        rt.photos,
        NewReport(
            "erin", "garbage_overflow", "满了", Location(centre.y, centre.x), "西湖区 1 号", checked
        ),
    )


def _key_record(key: str, request_hash: str = "h1") -> dict[str, Any]:
    return {
        "principal": "resident:erin",
        "key": key,
        "request_hash": request_hash,
        "status": 201,
        "body": {"id": "first", "status": "received"},
        "created_at": datetime(2026, 12, 1, 8, tzinfo=UTC),
    }


async def test_a_report_is_written_with_its_photos_and_outbox_row(h: Harness) -> None:
    before = await _counts(h)
    sub = await _submission(h, photos=2)
    assert await write_submission(h.runtime.db, sub.report, sub.photos, sub.outbox)
    after = await _counts(h)
    assert {k: after[k] - before[k] for k in after} == {
        "reports": 1,
        "photos": 2,
        "intake": 1,
        "keys": 0,
    }
    async with h.runtime.db.reader() as s:
        report = await s.get(Report, sub.accepted.report_id)
        photos = (await s.scalars(select(Photo).where(Photo.report_id == report.id))).all()
        row = await s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.topic == topics.INTAKE)
            .order_by(OutboxMessage.id.desc())
        )
    assert report is not None
    assert (report.source, report.category, report.address) == (
        "resident",
        "garbage_overflow",
        "西湖区 1 号",
    )
    assert report.created_at == sub.accepted.created_at
    assert sorted(p.sha256 for p in photos) == sorted(p["sha256"] for p in sub.photos)
    assert row is not None and row.payload == sub.outbox["payload"]
    assert row.payload["data"]["report_id"] == report.id


async def test_a_recorded_key_writes_nothing_and_says_so(h: Harness) -> None:
    first = await _submission(h)
    assert await write_submission(
        h.runtime.db, first.report, first.photos, first.outbox, _key_record("k-1")
    )
    before = await _counts(h)
    again = await _submission(h, photos=1)
    written = await write_submission(
        h.runtime.db, again.report, again.photos, again.outbox, _key_record("k-1", "other")
    )
    assert written is False
    assert await _counts(h) == before
    async with h.runtime.db.reader() as s:
        record = await s.get(IdempotencyRecord, ("resident:erin", "k-1"))
    assert record is not None and record.request_hash == "h1" and record.status == 201


async def test_a_report_that_cannot_be_written_leaves_nothing(h: Harness) -> None:
    sub = await _submission(h, photos=1)
    before = await _counts(h)
    broken = {**sub.report, "category": "no_such_category"}  # refused by its foreign key
    with pytest.raises((IntegrityError, asyncpg.ForeignKeyViolationError)):
        await write_submission(h.runtime.db, broken, sub.photos, sub.outbox, _key_record("k-2"))
    assert await _counts(h) == before


async def test_serialised_writes_never_take_the_one_statement_path(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded bus reads the outbox by id: on PostgreSQL too, its writes must commit one at
    # a time, so intake goes through the unit of work there.
    db = h.runtime.db
    monkeypatch.setattr(db, "serialize_writes", True)

    def no_direct() -> None:
        raise AssertionError("a direct statement while writes are serialised")

    monkeypatch.setattr(db, "direct", no_direct)
    before = await _counts(h)
    sub = await _submission(h)
    assert await write_submission(db, sub.report, sub.photos, sub.outbox, _key_record("k-3"))
    after = await _counts(h)
    assert (after["reports"] - before["reports"], after["keys"] - before["keys"]) == (1, 1)
