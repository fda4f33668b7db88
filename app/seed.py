"""First-start data: categories with their SLA goals, and the bundled demo city.

Idempotent: each part is written only when its table is empty. Demo sensor keys are generated
here and written once to <data_dir>/demo-devices.json (mode 0600) for `gridflow demo`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.devices.keys import add_key
from app.gridsets.store import store_grid_set
from app.models import Category, Department, Device, GridSet, Worker
from app.policies.catalog import DRILL
from app.policies.document import PolicyDocument, add_policies, apply, bundled
from geo.demo_city import demo_grids, demo_sensors, demo_workers


async def seed_categories(session: AsyncSession) -> None:
    """The bundled policy document into an empty database; later, only the bundled categories
    it lacks (with their departments and default policies). Stored policies are never
    overwritten: an install's own document stays as loaded."""
    doc = bundled()
    existing = set(await session.scalars(select(Category.code)))
    if not existing:
        await apply(session, doc)
        return
    missing = [c for c in doc.categories if c.code not in existing]
    if not missing:
        return
    departments = set(await session.scalars(select(Department.code)))
    needed = {c.department for c in missing}
    for d in doc.departments:
        if d.code in needed and d.code not in departments:
            session.add(Department(code=d.code, name=d.name, responsible=d.responsible))
    await session.flush()
    codes = {c.code for c in missing}
    partial = PolicyDocument(
        categories=missing, policies=[p for p in doc.policies if p.category in codes]
    )
    await add_policies(session, partial)


async def seed_demo_city(
    session: AsyncSession, data_dir: Path, now: datetime, master: bytes
) -> bool:
    """Load the demo city, its workers and sensors into an empty database. True if it did."""
    if await session.scalar(select(func.count()).select_from(GridSet)):
        return False
    grids = demo_grids()
    await store_grid_set(session, grids, source="bundled demo city", now=now)
    await add_policies(session, bundled([DRILL]))
    for w in demo_workers(grids):
        session.add(
            Worker(
                id=w.id,
                name=w.name,
                grid_code=w.grid_code,
                on_duty=True,
                lon=w.lon,
                lat=w.lat,
                location_at=now,
                skills=list(w.skills),
                department=w.department,
                created_at=now,
            )
        )
    keys: dict[str, dict[str, object]] = {}
    for sensor in demo_sensors():
        session.add(Device(id=sensor.id, name=sensor.name, created_at=now))
        await session.flush()
        key_id, secret = add_key(session, sensor.id, master, now)
        keys[sensor.id] = {
            "key_id": key_id,
            "secret": secret,
            "name": sensor.name,
            "category": sensor.category,
            "lon": sensor.lon,
            "lat": sensor.lat,
        }
    await session.flush()
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at first start
    path = data_dir / "demo-devices.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh, ensure_ascii=False, indent=2)
    return True
