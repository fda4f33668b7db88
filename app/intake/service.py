"""Accepting reports and alerts.

Each accepted submission is one Report row, its Photo rows and one ReportReceived outbox event,
all in the caller's transaction: once the caller commits (and answers 201/202), the report can
no longer be lost, whatever fails afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.events import (
    EventEnvelope,
    EventType,
    ReportReceivedData,
    outbox_row,
)
from app.cases.queries import open_case_for_device
from app.cases.states import ReportSource
from app.gridsets.store import LiveGrids
from app.models import Device, Photo, Report
from app.photos.store import CheckedPhoto, PhotoStore
from app.platform import topics
from app.platform.clock import Clock
from app.platform.db import Database
from app.platform.errors import OutsideServiceArea, UnknownCategory
from app.platform.tracing import traceparent
from app.platform.uow import UnitOfWork
from app.policies.categories import CategoryCache
from geo import CRS, Grid, GridIndex, to_wgs84

# Built once: plain Core INSERTs skip the unit of work and the per-call statement building.
_INSERT_REPORT = insert(cast(Table, Report.__table__))
_INSERT_PHOTO = insert(cast(Table, Photo.__table__))


@dataclass(frozen=True)
class Location:
    lat: float
    lon: float
    crs: CRS = CRS.WGS84


@dataclass(frozen=True)
class GridRef:
    code: str
    name: str
    path: list[Grid]  # street, community, unit grid; empty if the grid set has changed since

    @classmethod
    def of(cls, index: GridIndex, code: str) -> GridRef:
        grid = index.get(code)
        return cls(code, grid.name if grid else code, index.path(code))


@dataclass(frozen=True)
class Accepted:
    report_id: str
    category: str
    created_at: datetime
    grid: GridRef
    case_id: str | None = None
    created: bool = True


async def require_category(session: AsyncSession, categories: CategoryCache, code: str) -> None:
    if not await categories.known(session, code):
        raise UnknownCategory(f"unknown category {code!r}", known=sorted(categories.codes))


def _locate(grids: LiveGrids, location: Location) -> tuple[float, float, Grid, GridIndex]:
    lon, lat = to_wgs84(location.lon, location.lat, location.crs)
    index = grids.require()
    grid = index.locate(lon, lat)
    if grid is None:
        raise OutsideServiceArea(
            "the location is outside every grid of the service area",
            lat=location.lat,
            lon=location.lon,
            crs=location.crs.value,
        )
    return lon, lat, grid, index


def _received(
    report_id: str,
    source: str,
    reporter: str | None,
    device_id: str | None,
    category: str,
    grid_code: str,
    now: datetime,
) -> EventEnvelope:
    data = ReportReceivedData(
        report_id=report_id, source=source, category=category, grid=grid_code, device_id=device_id
    )
    return EventEnvelope(
        type=EventType.REPORT_RECEIVED,
        occurred_at=now,
        actor=f"{source}:{reporter or device_id}",
        grid=grid_code,
        category=category,
        data=data.model_dump(),
        trace=traceparent(),
    )


@dataclass(frozen=True)
class NewReport:
    """A resident's report as sent, before it is placed in a grid."""

    resident_id: str
    category: str
    description: str
    location: Location
    address: str | None = None
    photos: list[CheckedPhoto] = field(default_factory=list)


@dataclass(frozen=True)
class Submission:
    """What accepting one report writes: its row, its photos' rows, its outbox row."""

    accepted: Accepted
    report: dict[str, Any]
    photos: list[dict[str, Any]]
    outbox: dict[str, Any]


async def prepare_report(
    db: Database,
    grids: LiveGrids,
    categories: CategoryCache,
    clock: Clock,
    store: PhotoStore,
    new: NewReport,
) -> Submission:
    """Check and place a resident's report and store its photos' bytes; the rows are written
    by `write.write_submission` (one statement on PostgreSQL). Reads the database only for a
    category not in the cache."""
    if new.category not in categories.codes:
        async with db.reader() as session:
            await require_category(session, categories, new.category)
    return await _resident_submission(grids, clock, store, new)


async def submit_report(
    uow: UnitOfWork,
    grids: LiveGrids,
    categories: CategoryCache,
    clock: Clock,
    store: PhotoStore,
    new: NewReport,
) -> Accepted:
    """A resident's report written in the caller's unit of work (the same rows as
    `prepare_report` + `write_submission`)."""
    session = uow.session
    await require_category(session, categories, new.category)
    sub = await _resident_submission(grids, clock, store, new)
    await session.execute(_INSERT_REPORT, sub.report)
    if sub.photos:
        await session.execute(_INSERT_PHOTO, sub.photos)
    uow.add_outbox(sub.outbox)
    return sub.accepted


async def _resident_submission(
    grids: LiveGrids,
    clock: Clock,
    store: PhotoStore,
    new: NewReport,
) -> Submission:
    lon, lat, grid, index = _locate(grids, new.location)
    now = clock.now()
    report_id = str(uuid.uuid4())
    report = {
        "id": report_id,
        "source": ReportSource.RESIDENT,
        "reporter_id": new.resident_id,
        "category": new.category,
        "description": new.description,
        "address": new.address,
        "lon": lon,
        "lat": lat,
        "crs": new.location.crs.value,
        "lon_in": new.location.lon,
        "lat_in": new.location.lat,
        "grid_code": grid.code,
        "grid_set_version": index.version,
        "created_at": now,
    }
    for photo in new.photos:
        await asyncio.to_thread(store.save, photo)
    photo_rows = [
        {
            "id": str(uuid.uuid4()),
            "report_id": report_id,
            "sha256": photo.sha256,
            "content_type": photo.content_type,
            "width": photo.width,
            "height": photo.height,
            "size_bytes": len(photo.data),
            "created_at": now,
        }
        for photo in new.photos
    ]
    received = _received(
        report_id, ReportSource.RESIDENT, new.resident_id, None, new.category, grid.code, now
    )
    return Submission(
        Accepted(report_id, new.category, now, GridRef.of(index, grid.code)),
        report,
        photo_rows,
        outbox_row(topics.INTAKE, grid.code, received),
    )


async def submit_alert(
    uow: UnitOfWork,
    grids: LiveGrids,
    categories: CategoryCache,
    clock: Clock,
    *,
    device: Device,
    external_id: str,
    category: str,
    location: Location,
    observed_at: datetime,
    confidence: float | None,
) -> Accepted:
    """Store a sensor alert. A repeat of the same external_id is answered with the first one."""
    session = uow.session
    existing = await session.scalar(
        select(Report).where(Report.device_id == device.id, Report.external_id == external_id)
    )
    if existing is not None:
        return await _repeat(session, grids, existing)
    await require_category(session, categories, category)
    sub = alert_submission(
        grids,
        clock,
        device_id=device.id,
        external_id=external_id,
        category=category,
        location=location,
        observed_at=observed_at,
        confidence=confidence,
    )
    report = Report(**sub.report)
    try:
        async with session.begin_nested():
            session.add(report)
            await session.flush()
    except IntegrityError:
        # The same alert arrived twice at once; the other copy won.
        existing = await session.scalar(
            select(Report).where(Report.device_id == device.id, Report.external_id == external_id)
        )
        if existing is None:
            raise
        return await _repeat(session, grids, existing)
    uow.add_outbox(sub.outbox)
    open_case = await open_case_for_device(session, device.id, category)
    await session.flush()
    return replace(sub.accepted, case_id=open_case.id if open_case else None)


def alert_submission(
    grids: LiveGrids,
    clock: Clock,
    *,
    device_id: str,
    external_id: str,
    category: str,
    location: Location,
    observed_at: datetime,
    confidence: float | None,
) -> Submission:
    """The rows of a sensor alert (its category known): its report and its outbox row."""
    lon, lat, grid, index = _locate(grids, location)
    now = clock.now()
    report_id = str(uuid.uuid4())
    report = {
        "id": report_id,
        "source": ReportSource.SENSOR,
        "device_id": device_id,
        "external_id": external_id,
        "category": category,
        "description": "",
        "lon": lon,
        "lat": lat,
        "crs": location.crs.value,
        "lon_in": location.lon,
        "lat_in": location.lat,
        "grid_code": grid.code,
        "grid_set_version": index.version,
        "observed_at": observed_at,
        "confidence": confidence,
        "created_at": now,
    }
    received = _received(report_id, ReportSource.SENSOR, None, device_id, category, grid.code, now)
    return Submission(
        Accepted(report_id, category, now, GridRef.of(index, grid.code)),
        report,
        [],
        outbox_row(topics.INTAKE, grid.code, received),
    )


async def repeated_alert(
    db: Database, grids: LiveGrids, device_id: str, external_id: str
) -> Accepted:
    """The answer to an alert whose external_id the device sent before: the first one's."""
    async with db.reader() as session:
        existing = await session.scalar(
            select(Report).where(Report.device_id == device_id, Report.external_id == external_id)
        )
        if existing is None:  # the report is never deleted once its id is taken
            raise RuntimeError(f"no report for {device_id}/{external_id} after a conflict")
        return await _repeat(session, grids, existing)


async def _repeat(session: AsyncSession, grids: LiveGrids, report: Report) -> Accepted:
    case_id = report.case_id
    if case_id is None and report.device_id:
        open_case = await open_case_for_device(session, report.device_id, report.category)
        case_id = open_case.id if open_case else None
    grid = GridRef.of(grids.require(), report.grid_code)
    return Accepted(report.id, report.category, report.created_at, grid, case_id, created=False)
