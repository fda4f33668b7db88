"""Residents' data rights: personal fields sealed by commitment (every intact chain resealed),
reports' erasure and retention marks, the log of staff reads of personal data

Revision ID: 0015
Revises: 0011
Create Date: 2026-12-03

The reseal needs the audit key: `gridflow db upgrade` and a process that migrates on start hand
in their own (`Database.upgrade`); alembic run by hand falls back to the key the settings
(GRIDFLOW_AUTH__AUDIT_KEY, or the signing secret) give. Each case's chain is checked as it was
sealed before; a chain that verifies is sealed again with its personal fields as commitments
(app/cases/audit.py, the live code on purpose: the chain is what that code verifies), in case
id order, all in the migration's transaction. A chain that does not verify is left exactly as
it is, so `gridflow audit verify` goes on reporting what it reported before; the migration
logs how many, and the first of them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
RETENTION_WHERE = "coarsened_at IS NULL AND source = 'resident'"
ERASED_WHERE = "erased_at IS NOT NULL AND coarsened_at IS NULL"
CASES_PER_READ = 200
log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table("case_events") as batch:
        batch.add_column(sa.Column("commitments", JSON, nullable=True))
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("coarsened_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_reports_retention",
        "reports",
        ["created_at"],
        postgresql_where=sa.text(RETENTION_WHERE),
        sqlite_where=sa.text(RETENTION_WHERE),
    )
    op.create_index(
        "ix_reports_erased_pending",
        "reports",
        ["erased_at"],
        postgresql_where=sa.text(ERASED_WHERE),
        sqlite_where=sa.text(ERASED_WHERE),
    )
    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.Column("report_id", sa.String(36), nullable=True),
        sa.Column("what", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    op.create_index(op.f("ix_access_log_at"), "access_log", ["at"])
    op.create_index("ix_access_log_case", "access_log", ["case_id", "id"])
    op.create_index("ix_access_log_subject", "access_log", ["subject", "id"])
    _reseal(op.get_bind())


def downgrade() -> None:
    # Resealed chains stay in the commitment form: the code before this revision cannot
    # verify them (it hashes every field whole).
    op.drop_index("ix_access_log_subject", table_name="access_log")
    op.drop_index("ix_access_log_case", table_name="access_log")
    op.drop_index(op.f("ix_access_log_at"), table_name="access_log")
    op.drop_table("access_log")
    op.drop_index("ix_reports_erased_pending", table_name="reports")
    op.drop_index("ix_reports_retention", table_name="reports")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of `reports` would drop the
    # table that photos and feedback refer to, which SQLite's foreign keys refuse.
    op.drop_column("reports", "coarsened_at")
    op.drop_column("reports", "erased_at")
    op.drop_column("case_events", "commitments")


def _audit_key() -> bytes:
    key = op.get_context().config.attributes.get("audit_key")
    if key is None:
        from app.platform.settings import Settings

        key = Settings().audit_key()
    return bytes(key)


def _reseal(bind: sa.engine.Connection) -> None:
    from app.cases.audit import GENESIS, check_case, seal
    from app.cases.events import NewEvent
    from app.models import Json, UtcDateTime

    cases = sa.table(
        "cases", sa.column("id", sa.String), sa.column("seq"), sa.column("head_hash")
    )
    events = sa.table(
        "case_events",
        *(
            sa.column(name)
            for name in ("id", "event_id", "case_id", "seq", "type", "version", "actor")
        ),
        sa.column("occurred_at", UtcDateTime()),
        sa.column("grid_code"),
        sa.column("category"),
        sa.column("data", Json),
        sa.column("prev_hash"),
        sa.column("hash"),
        sa.column("commitments", Json),
    )
    if bind.execute(sa.select(events.c.id).limit(1)).first() is None:
        return  # a new database: nothing to reseal, no key needed
    key = _audit_key()
    set_event = (
        events.update()
        .where(events.c.id == sa.bindparam("b_id"))
        .values(
            prev_hash=sa.bindparam("b_prev"),
            hash=sa.bindparam("b_hash"),
            commitments=sa.bindparam("b_commitments", type_=Json),
        )
    )
    set_head = (
        cases.update().where(cases.c.id == sa.bindparam("b_id")).values(head_hash=sa.bindparam("b_head"))
    )
    after, resealed, left = "", 0, []
    while True:
        batch = list(
            bind.execute(
                sa.select(cases).where(cases.c.id > after).order_by(cases.c.id).limit(CASES_PER_READ)
            )
        )
        if not batch:
            break
        after = batch[-1].id
        chains: dict[str, list[Any]] = defaultdict(list)
        for row in bind.execute(
            sa.select(events)
            .where(events.c.case_id.in_([c.id for c in batch]))
            .order_by(events.c.case_id, events.c.seq)
        ):
            chains[row.case_id].append(row)
        event_rows: list[dict[str, Any]] = []
        heads: list[dict[str, Any]] = []
        for case in batch:
            chain = chains.get(case.id)
            if not chain or any(e.commitments is not None for e in chain):
                continue
            if check_case(key, case, chain):  # type: ignore[arg-type]
                left.append(case.id)
                continue
            prev = GENESIS
            for e in chain:
                new = NewEvent(
                    event_id=e.event_id,
                    case_id=e.case_id,
                    seq=e.seq,
                    type=e.type,
                    version=e.version,
                    occurred_at=e.occurred_at,
                    actor=e.actor,
                    grid_code=e.grid_code,
                    category=e.category,
                    data=e.data,
                )
                seal(key, prev, new)
                if new.hash != e.hash or new.commitments is not None:
                    event_rows.append(
                        {
                            "b_id": e.id,
                            "b_prev": new.prev_hash,
                            "b_hash": new.hash,
                            "b_commitments": new.commitments,
                        }
                    )
                prev = new.hash
            heads.append({"b_id": case.id, "b_head": prev})
            resealed += 1
        if event_rows:
            bind.execute(set_event, event_rows)
        if heads:
            bind.execute(set_head, heads)
    log.info("resealed %d case histories with personal fields as commitments", resealed)
    if left:
        log.warning(
            "%d case histories did not verify and were left as they were (gridflow audit "
            "verify names their faults): %s%s",
            len(left),
            ", ".join(left[:20]),
            " …" if len(left) > 20 else "",
        )
