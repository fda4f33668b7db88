"""The checks of `gridflow doctor`. Each reads, none writes: doctor is safe on a live system.

A check that cannot run because an earlier one failed (no database, so no grids) is reported
as skipped; only a failed check makes doctor fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import GridRow, GridSet, Worker
from app.platform.db import Database
from app.platform.settings import Settings
from dispatch.holidays import CoverageLevel, calendar_coverage, city_today
from geo import GridLevel

CLOCK_WARN_S = 2.0  # SLA clocks run on each process's clock; timestamps come from the database
CLOCK_FAIL_S = 60.0
KAFKA_TIMEOUT_S = 10.0


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status.value, "message": self.message}


def _secrets(s: Settings) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the three secrets, read without creating any: outside
    production a missing signing secret is made on first start, which doctor must not do."""
    problems: list[str] = []
    warnings: list[str] = []
    explicit = (
        (s.auth.secret, "GRIDFLOW_AUTH__SECRET"),
        (s.auth.audit_key, "GRIDFLOW_AUTH__AUDIT_KEY"),
        (s.auth.device_master_key, "GRIDFLOW_AUTH__DEVICE_MASTER_KEY"),
    )
    for value, name in explicit:
        if value is not None and len(value.get_secret_value()) < 32:
            problems.append(f"{name} must be at least 32 characters")
    if s.auth.secret is None:
        if s.env == "production":
            problems.append("GRIDFLOW_AUTH__SECRET must be set outside development")
        elif not _exists(s.data_dir / "jwt-secret"):
            warnings.append(
                f"no signing secret yet: {s.data_dir / 'jwt-secret'} is made on first start"
            )
    if s.env == "production":
        for value, name in explicit[1:]:
            if value is None:
                warnings.append(f"{name} is derived from the signing secret: rotating it breaks it")
    return problems, warnings


def _exists(path: Path) -> bool:
    return path.exists()


def _settings(s: Settings) -> Finding:
    problems, warnings = _secrets(s)
    if not _database_url_parses(s):
        problems.append("GRIDFLOW_DB__URL does not parse as a database URL")
    if s.bus.kind == "kafka":
        for server in s.kafka.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                problems.append(f"GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS: {server!r} is not host:port")
    if problems:
        return Finding("settings", Status.FAIL, "; ".join(problems))
    if warnings:
        return Finding("settings", Status.WARN, "; ".join(warnings))
    return Finding("settings", Status.OK, f"env {s.env}, secrets present, URLs parse")


def _database_url_parses(s: Settings) -> bool:
    try:
        make_url(s.database_url)
    except ArgumentError:
        return False
    return True


async def _revisions(db: Database) -> tuple[str | None, str | None]:
    """(the database's migration revision, the code's head)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from app.platform.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    async with db.engine.connect() as conn:
        current = await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
    return current, head


def _missing_file(db: Database) -> str | None:
    """The SQLite file's path if it does not exist (connecting would create it)."""
    path = db.engine.url.database if db.is_sqlite else None
    return path if path and path != ":memory:" and not Path(path).exists() else None


async def _database(db: Database) -> Finding:
    if path := _missing_file(db):
        return Finding(
            "database",
            Status.FAIL,
            f"SQLite, no database file at {path}: run `gridflow db upgrade` or `gridflow serve`",
        )
    try:
        current, head = await _revisions(db)
    except Exception as exc:
        return Finding("database", Status.FAIL, f"unreachable: {type(exc).__name__}: {exc}")
    kind = "SQLite" if db.is_sqlite else "PostgreSQL"
    if current is None:
        return Finding("database", Status.FAIL, f"{kind}, no schema yet: run `gridflow db upgrade`")
    if current != head:
        return Finding(
            "database",
            Status.FAIL,
            f"{kind} at migration {current}, the code needs {head}: run `gridflow db upgrade`",
        )
    extra = ""
    if not db.is_sqlite:
        async with db.reader() as session:
            postgis = await session.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            )
        extra = f", PostGIS {postgis}" if postgis else ", without PostGIS (grids located in memory)"
    return Finding("database", Status.OK, f"{kind} reachable, at head ({head}){extra}")


async def _clock(db: Database, wall: Callable[[], float]) -> Finding:
    if db.is_sqlite:
        return Finding("clock", Status.OK, "SQLite runs in this process: one clock")
    async with db.reader() as session:
        before = wall()
        theirs: datetime = await session.scalar(text("SELECT clock_timestamp()"))
        after = wall()
    skew = abs(theirs.timestamp() - (before + after) / 2)
    message = f"this machine and the database differ by {skew:.2f} s"
    if skew >= CLOCK_FAIL_S:
        return Finding("clock", Status.FAIL, message + ": SLA deadlines would be wrong")
    if skew >= CLOCK_WARN_S:
        return Finding("clock", Status.WARN, message + ": check NTP on both")
    return Finding("clock", Status.OK, message)


async def _grids(session: AsyncSession) -> list[Finding]:
    version = await session.scalar(select(GridSet.version).where(GridSet.active))
    if version is None:
        return [
            Finding("grids", Status.FAIL, "no live grid set: `gridflow grids import FILE`"),
            Finding("duty", Status.SKIP, "no grids to staff"),
        ]
    counts = dict(
        (
            await session.execute(
                select(GridRow.level, func.count())
                .where(GridRow.grid_set_version == version)
                .group_by(GridRow.level)
            )
        ).all()
    )
    units = counts.get(GridLevel.UNIT.value, 0)
    if units == 0:
        return [
            Finding("grids", Status.FAIL, f"live grid set {version} has no unit grids"),
            Finding("duty", Status.SKIP, "no unit grids to staff"),
        ]
    grids = Finding(
        "grids", Status.OK, f"live grid set {version}: {sum(counts.values())} grids, {units} units"
    )
    unit_codes = set(
        await session.scalars(
            select(GridRow.code).where(
                GridRow.grid_set_version == version, GridRow.level == GridLevel.UNIT.value
            )
        )
    )
    staffed = set(
        await session.scalars(
            select(Worker.grid_code).where(Worker.on_duty, Worker.department.is_(None)).distinct()
        )
    )
    empty = sorted(unit_codes - staffed)
    if not empty:
        duty = Finding("duty", Status.OK, f"every one of {units} unit grids has a worker on duty")
    else:
        shown = ", ".join(empty[:5]) + (" …" if len(empty) > 5 else "")
        duty = Finding(
            "duty",
            Status.WARN,
            f"{len(empty)} of {units} unit grids have no worker on duty ({shown}): their cases "
            "wait for redispatch and escalate",
        )
    return [grids, duty]


async def _policies(session: AsyncSession) -> Finding:
    from app.policies import document as policies

    doc = await policies.current(session)
    problems = policies.check(doc)
    if problems:
        first = "; ".join(f"{p.at}: {p.message}" for p in problems[:3])
        return Finding("policies", Status.FAIL, f"{len(problems)} problem(s): {first}")
    if not doc.categories:
        return Finding("policies", Status.FAIL, "no categories: `gridflow policies load FILE`")
    return Finding(
        "policies",
        Status.OK,
        f"{len(doc.categories)} categories, each with a policy; {len(doc.policies)} policies",
    )


async def _kafka(s: Settings) -> Finding:
    if s.bus.kind != "kafka":
        return Finding("kafka", Status.SKIP, "the embedded bus: no Kafka")
    from aiokafka.admin import AIOKafkaAdminClient

    from app.platform.kafka_bus import physical
    from app.platform.topics import ALL

    admin = AIOKafkaAdminClient(
        bootstrap_servers=s.kafka.bootstrap_servers,
        client_id=f"{s.kafka.client_id}-doctor",
        request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000),
    )
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S * 2):
            try:
                await admin.start()
                wanted = [physical(s.kafka, t) for t in ALL]
                existing = set(await admin.list_topics())
                missing = [t for t in wanted if t not in existing]
                described: list[Any] = (
                    await admin.describe_topics([t for t in wanted if t in existing])
                    if len(missing) < len(wanted)
                    else []
                )
            finally:
                with contextlib.suppress(Exception):  # also after a start that failed
                    await admin.close()
    except Exception as exc:
        return Finding(
            "kafka",
            Status.FAIL,
            f"{s.kafka.bootstrap_servers} unreachable: {type(exc).__name__}: {exc}",
        )
    if missing:
        return Finding(
            "kafka", Status.FAIL, f"missing topics {', '.join(missing)}: `gridflow kafka init`"
        )
    short = [
        f"{d['topic']} has {len(d['partitions'])}"
        for d in described
        if len(d["partitions"]) != s.kafka.partitions
    ]
    if short:
        return Finding(
            "kafka",
            Status.WARN,
            f"partitions differ from GRIDFLOW_KAFKA__PARTITIONS={s.kafka.partitions}: "
            + ", ".join(short),
        )
    return Finding(
        "kafka",
        Status.OK,
        f"{s.kafka.bootstrap_servers}: {len(wanted)} topics, {s.kafka.partitions} partitions each",
    )


async def examine(
    s: Settings, *, now: datetime | None = None, wall: Callable[[], float] = time.time
) -> list[Finding]:
    """Every check, in order. `now` is the day the city's calendar is judged on, `wall` this
    machine's clock (held against the database's). A check that raises is a FAIL line, never a
    traceback: doctor is what one runs when things are broken."""
    today = now or datetime.now(UTC)
    found = [_settings(s), _guarded("calendar", lambda: _calendar(s, today))]
    if not _database_url_parses(s):
        found += [
            Finding(name, Status.SKIP, "no database to read")
            for name in ("database", "clock", "grids", "duty", "policies")
        ]
    else:
        found += await _with_database(s, wall)
    found.append(await _aguarded("kafka", _kafka(s)))
    return found


async def _with_database(s: Settings, wall: Callable[[], float]) -> list[Finding]:
    db = Database(s.database_url)
    try:
        database = await _aguarded("database", _database(db))
        if database.status is Status.FAIL:
            return [database] + [
                Finding(name, Status.SKIP, "no database to read")
                for name in ("clock", "grids", "duty", "policies")
            ]
        found = [database, await _aguarded("clock", _clock(db, wall))]
        async with db.reader() as session:
            try:
                found += await _grids(session)
            except Exception as exc:
                found += [_failed("grids", exc), Finding("duty", Status.SKIP, "no grids read")]
            found.append(await _aguarded("policies", _policies(session)))
        return found
    finally:
        await db.dispose()


def _failed(check: str, exc: Exception) -> Finding:
    return Finding(check, Status.FAIL, f"could not check: {type(exc).__name__}: {exc}")


def _guarded(check: str, run: Callable[[], Finding]) -> Finding:
    try:
        return run()
    except Exception as exc:
        return _failed(check, exc)


async def _aguarded(check: str, run: Coroutine[Any, Any, Finding]) -> Finding:
    try:
        return await run
    except Exception as exc:
        return _failed(check, exc)


_LEVEL = {CoverageLevel.OK: Status.OK, CoverageLevel.WARNING: Status.WARN}


def _calendar(s: Settings, now: datetime) -> Finding:
    calendar = s.sla.calendar
    coverage = calendar_coverage(calendar, city_today(calendar, now))
    return Finding("calendar", _LEVEL.get(coverage.level, Status.FAIL), coverage.message)
