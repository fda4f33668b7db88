"""Writing an accepted submission: its report, photos and ReportReceived outbox row, and the
Idempotency-Key's record with the answer, all or nothing.

On PostgreSQL that is one statement, hence one round trip and its own transaction (unless the
embedded bus is in use: it reads the outbox by id, so writes there commit one at a time, in
the unit of work): the rows are inserted by data-modifying CTEs, each conditional on the key's
record being new, and the relays' NOTIFY is its final SELECT (delivered when the statement
commits). On SQLite the same
rows are written by plain INSERTs in one unit of work. Either way nothing is written for a key
already recorded: the caller answers with the first answer instead.

The SQL is generated from the tables' own columns (app/models.py), with every parameter cast to
its column's type, and the values are laid out as for a bulk write (`app/platform/bulk.py`), so
a new column needs no change here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Column, Table, insert, select
from sqlalchemy.dialects import postgresql

from app.cases.states import JOINABLE_BY_ALERT
from app.models import IdempotencyRecord, OutboxMessage, Photo, Report
from app.platform.bulk import new_columns, row_values
from app.platform.db import OUTBOX_CHANNEL, Database

Row = Mapping[str, Any]

_REPORTS = cast(Table, Report.__table__)
_PHOTOS = cast(Table, Photo.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)
_KEYS = cast(Table, IdempotencyRecord.__table__)
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_type(column: Column[Any]) -> str:
    """The column's type for a cast, without a length: `'…'::VARCHAR(8)` would cut a value
    short silently, where the column itself refuses one that is too long."""
    return re.sub(r"^(VARCHAR)\(\d+\)$", r"\1", column.type.compile(dialect=_PG))


@cache
def _sql(keyed: bool) -> str:
    """The one statement for a submission, with or without an Idempotency-Key's record."""
    n = 0
    ctes: list[str] = []

    def row(table: Table, source: str) -> str:
        nonlocal n
        cols = new_columns(table)
        names = ", ".join(c.name for c in cols)
        values = ", ".join(f"${n + 1 + i}::{_pg_type(c)}" for i, c in enumerate(cols))
        n += len(cols)
        if source:
            return f"INSERT INTO {table.name} ({names}) SELECT {values} FROM {source}"
        return f"INSERT INTO {table.name} ({names}) VALUES ({values})"

    if keyed:
        ctes.append(f"claim AS ({row(_KEYS, '')} ON CONFLICT DO NOTHING RETURNING 1 AS one)")
    gate = "claim" if keyed else ""
    ctes.append(f"report AS ({row(_REPORTS, gate)} RETURNING id)")
    ctes.append(f"outbox AS ({row(_OUTBOX, gate)})")
    cols = new_columns(_PHOTOS)
    names = ", ".join(c.name for c in cols)
    fields = ", ".join(f"{c.name} {_pg_type(c)}" for c in cols)
    n += 1
    ctes.append(
        f"photos AS (INSERT INTO {_PHOTOS.name} ({names}) SELECT {names} FROM "
        f"jsonb_to_recordset(${n}::jsonb) AS p({fields}) WHERE EXISTS (SELECT 1 FROM report))"
    )
    final = f"SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM {'claim' if keyed else 'report'}"
    return "WITH " + ",\n".join(ctes) + "\n" + final


def _photo_json(photos: Sequence[Row]) -> str:
    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else v

    return json.dumps([{k: plain(v) for k, v in p.items()} for p in photos])


async def write_submission(
    db: Database,
    report: Row,
    photos: Sequence[Row],
    outbox: Row,
    key_record: Row | None = None,
) -> bool:
    """Write the rows of one accepted submission, all or nothing. False, and nothing written,
    when `key_record`'s (principal, key) is already recorded."""
    if db.serialize_writes:
        # SQLite, or the embedded bus reading the outbox by id: writes commit one at a time
        return await _write_in_transaction(db, report, photos, outbox, key_record)
    args: list[Any] = []
    if key_record is not None:
        args += row_values(_KEYS, key_record)
    args += [*row_values(_REPORTS, report), *row_values(_OUTBOX, outbox), _photo_json(photos)]
    async with db.direct() as conn:
        rows = await conn.fetch(_sql(key_record is not None), *args)
    if not rows:
        return False
    db.committed()
    return True


async def _write_in_transaction(
    db: Database, report: Row, photos: Sequence[Row], outbox: Row, key_record: Row | None
) -> bool:
    async with db.transaction() as uow:
        session = uow.session
        if key_record is not None:
            # Writers are serialised on SQLite: looking first cannot race another writer.
            found = await session.scalar(
                select(_KEYS.c.principal).where(
                    _KEYS.c.principal == key_record["principal"], _KEYS.c.key == key_record["key"]
                )
            )
            if found is not None:
                return False
            await session.execute(insert(_KEYS), dict(key_record))
        await session.execute(insert(_REPORTS), dict(report))
        if photos:
            await session.execute(insert(_PHOTOS), [dict(p) for p in photos])
        uow.add_outbox(dict(outbox))
    return True


@dataclass(frozen=True)
class AlertWrite:
    """What the alert statement found: `live` (the key and its device are not revoked),
    `fresh` (the signature was not seen before), the new report's id (None: the device sent
    this external_id before, or the request was refused), and the device's open case."""

    live: bool
    fresh: bool
    report_id: str | None
    case_id: str | None


@cache
def _alert_sql() -> str:
    cols = new_columns(_REPORTS)
    names = ", ".join(c.name for c in cols)
    values = ", ".join(f"${4 + i}::{_pg_type(c)}" for i, c in enumerate(cols))
    n = 4 + len(cols)
    out = new_columns(_OUTBOX)
    out_names = ", ".join(c.name for c in out)
    out_values = ", ".join(f"${n + i}::{_pg_type(c)}" for i, c in enumerate(out))
    n += len(out)
    joinable = ", ".join(f"'{s.value}'" for s in sorted(JOINABLE_BY_ALERT))
    return f"""WITH live AS (
  SELECT 1 FROM device_keys k JOIN devices d ON d.id = k.device_id
  WHERE k.id = $1 AND k.revoked_at IS NULL AND d.revoked_at IS NULL
), sig AS (
  INSERT INTO seen_signatures (signature, key_id, seen_at)
  SELECT $2::VARCHAR, $1, $3::TIMESTAMP WITH TIME ZONE FROM live
  ON CONFLICT DO NOTHING RETURNING 1
), report AS (
  INSERT INTO reports ({names}) SELECT {values} FROM sig
  ON CONFLICT (device_id, external_id) DO NOTHING RETURNING id
), outbox AS (
  INSERT INTO outbox ({out_names}) SELECT {out_values} FROM report
)
SELECT EXISTS (SELECT 1 FROM live) AS live, EXISTS (SELECT 1 FROM sig) AS fresh,
  (SELECT id FROM report) AS report_id,
  (SELECT id FROM cases WHERE source_device_id = ${n}::VARCHAR
     AND category = ${n + 1}::VARCHAR AND status IN ({joinable})
     ORDER BY created_at DESC LIMIT 1) AS case_id,
  (SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM report) AS notified"""


async def write_alert(
    db: Database, key_id: str, signature: str, report: Row, outbox: Row
) -> AlertWrite:
    """On PostgreSQL with Kafka (`db.serialize_writes` false), in one statement: check that
    the key and its device are live, remember
    the signature (refusing a replay), write the alert's report and outbox row unless the
    device sent its external_id before, and find the device's open case for the category."""
    args = [key_id[:40], signature.lower(), report["created_at"]]
    args += [*row_values(_REPORTS, report), *row_values(_OUTBOX, outbox)]
    args += [report["device_id"], report["category"]]
    async with db.direct() as conn:
        row = await conn.fetchrow(_alert_sql(), *args)
    assert row is not None
    written = AlertWrite(row["live"], row["fresh"], row["report_id"], row["case_id"])
    if written.report_id is not None:
        db.committed()
    return written
