"""Inserting many rows of one table: binary COPY on PostgreSQL, executemany on SQLite.

For the engine's batches (cases, tasks, timers, outbox rows), where building a multi-row
INSERT's parameters costs more than the database's own work. Rows are column dicts; a column a
row leaves out gets its scalar default, an autoincrement key is left to the database. The COPY
runs on the session's own connection, inside its transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import JSON, Column, Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import State
from app.platform.errors import DRIVER_DOWN

_MISSING = object()
COPY_FROM = 16  # fewer rows are one multi-row INSERT: a COPY costs a second round trip


_PLAIN, _JSON, _STATE = 0, 1, 2


def _kind(column: Column[Any]) -> int:
    impl = column.type
    if isinstance(impl, JSON) or isinstance(getattr(impl, "impl", None), JSON):
        return _JSON
    return _STATE if isinstance(impl, State) else _PLAIN


@cache
def _plan(table: Table, keys: frozenset[str]) -> tuple[list[str], list[tuple[str, int, Any]]]:
    """The columns COPY fills for rows with `keys`: (key, kind, default if left out)."""
    names: list[str] = []
    plan: list[tuple[str, int, Any]] = []
    for c in table.columns:
        if c.key not in keys:
            if c.primary_key and c.autoincrement is True:
                continue  # the database assigns it
            if c.default is not None and not c.default.is_scalar:
                raise ValueError(f"{table.name}.{c.key}: only scalar defaults can be filled")
            default = c.default.arg if c.default is not None else None  # type: ignore[attr-defined]
        else:
            default = _MISSING
        names.append(c.name)
        plan.append((c.key, _kind(c), default))
    return names, plan


def _record(row: Mapping[str, Any], plan: list[tuple[str, int, Any]]) -> tuple[Any, ...]:
    values: list[Any] = []
    for key, kind, default in plan:
        value = row[key] if default is _MISSING else row.get(key, default)
        if kind and value is not None:
            if kind == _JSON:
                value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            elif isinstance(value, StrEnum):
                value = value.value
        values.append(value)
    return tuple(values)


def new_columns(table: Table) -> list[Column[Any]]:
    """The columns a new row of `table` is written with: all but a database-assigned key."""
    return [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]


def row_values(table: Table, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """`row`'s values for `new_columns(table)`, in that order and as the driver takes them
    (JSON as text, a state as its value), a column left out with its scalar default."""
    return _record(row, _plan(table, frozenset(row))[1])


async def insert_rows(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert `rows` (column dicts with the same keys) into `table` in the session's
    transaction."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < COPY_FROM:
        await session.execute(insert(table), [dict(r) for r in rows])
        return
    names, plan = _plan(table, frozenset(rows[0]))
    records = [_record(row, plan) for row in rows]
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        # The driver opens the session's transaction at its first statement: make sure it has,
        # or the COPY would commit on its own.
        await session.execute(text("SELECT 1"))
    try:
        await driver.copy_records_to_table(table.name, records=records, columns=names)
    except DRIVER_DOWN as exc:
        # as the ORM's statements report it: the database is away (503; the engine waits)
        raise ConnectionError(f"the database connection failed: {exc}") from exc
