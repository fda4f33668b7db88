"""Writing an accepted submission: its report, photos and ReportReceived outbox row, and the
Idempotency-Key's record with the answer, all or nothing.

On PostgreSQL that is one statement, hence one round trip and its own transaction: the rows are
inserted by data-modifying CTEs, each conditional on the key's record being new, and the
relays' NOTIFY is its final SELECT (delivered when the statement commits). On SQLite the same
rows are written by plain INSERTs in one unit of work. Either way nothing is written for a key
already recorded: the caller answers with the first answer instead.

The SQL is generated from the tables' own columns (app/models.py), with every parameter cast to
its column's type, so a new column needs no change here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, cast

from sqlalchemy import Column, Table, insert, select
from sqlalchemy.dialects import postgresql

from app.models import IdempotencyRecord, OutboxMessage, Photo, Report
from app.platform.db import OUTBOX_CHANNEL, Database

Row = Mapping[str, Any]

_REPORTS = cast(Table, Report.__table__)
_PHOTOS = cast(Table, Photo.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)
_KEYS = cast(Table, IdempotencyRecord.__table__)
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _columns(table: Table) -> list[Column[Any]]:
    skip = {"sent_at"} if table is _OUTBOX else set()
    return [
        c for c in table.columns if c.key not in skip and not (table is _OUTBOX and c.key == "id")
    ]


def _pg_type(column: Column[Any]) -> str:
    return column.type.compile(dialect=_PG)


def _is_json(column: Column[Any]) -> bool:
    return _pg_type(column) in ("JSONB", "JSON")


@cache
def _converters(table: Table) -> list[tuple[str, bool]]:
    """Per column of `table` in statement order: its key and whether it is sent as JSON text."""
    return [(c.key, _is_json(c)) for c in _columns(table)]


@cache
def _sql(keyed: bool) -> str:
    """The one statement for a submission, with or without an Idempotency-Key's record."""
    n = 0
    ctes: list[str] = []

    def row(table: Table, source: str) -> str:
        nonlocal n
        cols = _columns(table)
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
    cols = _columns(_PHOTOS)
    names = ", ".join(c.name for c in cols)
    fields = ", ".join(f"{c.name} {_pg_type(c)}" for c in cols)
    n += 1
    ctes.append(
        f"photos AS (INSERT INTO {_PHOTOS.name} ({names}) SELECT {names} FROM "
        f"jsonb_to_recordset(${n}::jsonb) AS p({fields}) WHERE EXISTS (SELECT 1 FROM report))"
    )
    final = f"SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM {'claim' if keyed else 'report'}"
    return "WITH " + ",\n".join(ctes) + "\n" + final


def _args(table: Table, row: Row) -> list[Any]:
    args: list[Any] = []
    for key, is_json in _converters(table):
        value = row.get(key)
        if is_json and value is not None:
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        elif isinstance(value, StrEnum):
            value = value.value
        args.append(value)
    return args


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
    if db.is_sqlite:
        return await _write_in_transaction(db, report, photos, outbox, key_record)
    args: list[Any] = []
    if key_record is not None:
        args += _args(_KEYS, key_record)
    args += _args(_REPORTS, report) + _args(_OUTBOX, outbox) + [_photo_json(photos)]
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
