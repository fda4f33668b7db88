"""Residents' data rights: personal fields sealed by commitment (every intact chain resealed),
reports' erasure and retention marks, the log of staff reads of personal data

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-03

The reseal needs the audit key: `gridflow db upgrade` and a process that migrates on start hand
in their own (`Database.upgrade`); alembic run by hand falls back to the key the settings
(GRIDFLOW_AUTH__AUDIT_KEY, or the signing secret) give. Each case's chain is checked as it was
sealed before; a chain that verifies is sealed again with its personal fields as commitments
(app/cases/audit.py, the live code on purpose: the chain is what that code verifies), in case
id order, all in the migration's transaction. A chain that does not verify is left exactly as
it is, so `gridflow audit verify` goes on reporting what it reported before; the migration
logs how many, and the first of them.

Audit checkpoints (migration 0014) taken before name the old heads: if they all hold (signature,
links, leaves), the leaves they keep are carried over to the new heads and they are signed
again, from the oldest with leaves on, with the same key; else they are left to be reported.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0013"
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
        sa.column("department"),
        sa.column("data", Json),
        sa.column("prev_hash"),
        sa.column("hash"),
        sa.column("commitments", Json),
    )
    if bind.execute(sa.select(events.c.id).limit(1)).first() is None:
        return  # a new database: nothing to reseal, no key needed
    key = _audit_key()
    # The heads the stored checkpoints name, by (case, seq): carried over to their new hashes.
    named = _checkpointed_heads(bind)
    carried: dict[tuple[str, int, bytes], bytes] = {}
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
                    department=e.department,
                    data=e.data,
                )
                seal(key, prev, new)
                assert new.hash is not None
                if new.hash != e.hash or new.commitments is not None:
                    event_rows.append(
                        {
                            "b_id": e.id,
                            "b_prev": new.prev_hash,
                            "b_hash": new.hash,
                            "b_commitments": new.commitments,
                        }
                    )
                old = bytes.fromhex(e.hash)
                if named.get((case.id, e.seq)) == old:
                    carried[(case.id, e.seq, old)] = bytes.fromhex(new.hash)
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
    if carried:
        _carry_checkpoints(bind, key, carried)


def _checkpoint_tables() -> tuple[sa.TableClause, sa.TableClause]:
    from app.models import Json, UtcDateTime

    checkpoints = sa.table(
        "audit_checkpoints",
        *(
            sa.column(name)
            for name in ("id", "cases", "events", "root", "prev_digest", "vanished",
                         "rolled_back", "key_id", "signature")
        ),
        sa.column("taken_at", UtcDateTime()),
        sa.column("faults", Json),
    )
    leaves = sa.table(
        "audit_checkpoint_leaves",
        sa.column("checkpoint_id"),
        sa.column("chunk"),
        sa.column("count"),
        sa.column("data", sa.LargeBinary()),
    )
    return checkpoints, leaves


def _checkpointed_heads(bind: sa.engine.Connection) -> dict[tuple[str, int], bytes]:
    """Every (case, seq) → head the stored checkpoint leaves name (migration 0014's tables;
    none when they are absent or empty)."""
    if not sa.inspect(bind).has_table("audit_checkpoint_leaves"):
        return {}
    from app.cases.checkpoints import unpack

    _, leaves = _checkpoint_tables()
    named: dict[tuple[str, int], bytes] = {}
    for (data,) in bind.execute(sa.select(leaves.c.data)):
        for leaf in unpack(data):
            named[(leaf.case_id, leaf.seq)] = leaf.head
    return named


def _carry_checkpoints(
    bind: sa.engine.Connection, key: bytes, carried: dict[tuple[str, int, bytes], bytes]
) -> None:
    """The reseal gave every head a new hash: the checkpoints that keep their leaves would
    find every case rolled back. Their leaves get the new hashes, their roots are computed
    again and, from the oldest of them on, each statement is signed again and linked to the one
    before, with the same key. Only if they all hold as they are (signature and links):
    checkpoints that do not hold are left as they are, to be reported. Copies exported before
    no longer match and are exported again (README, "Residents' data")."""
    from app.cases.checkpoints import (
        CheckpointKey,
        Leaf,
        MerkleTree,
        canonical,
        digest,
        pack,
        signature_holds,
        statement,
        unpack,
    )
    from app.models import AuditCheckpoint

    checkpoints, leaves = _checkpoint_tables()
    signer = CheckpointKey(key)
    rows = [
        AuditCheckpoint(**dict(r._mapping))
        for r in bind.execute(sa.select(checkpoints).order_by(checkpoints.c.id))
    ]
    kept = sorted({cid for (cid,) in bind.execute(sa.select(leaves.c.checkpoint_id).distinct())})
    before: AuditCheckpoint | None = None
    for cp in rows:
        links = cp.prev_digest is None if before is None else cp.prev_digest == digest(statement(before))
        if cp.key_id != signer.key_id or not links or not signature_holds(
            signer.public, cp.signature, canonical(statement(cp))
        ):
            log.warning(
                "audit checkpoint %d does not hold: the checkpoints are left as they are, and "
                "gridflow audit verify will report the resealed cases as rolled back",
                cp.id,
            )
            return
        before = cp
    by_id = {cp.id: cp for cp in rows}
    for cid in kept:  # and their leaves make their signed roots
        tree = MerkleTree()
        for (data,) in bind.execute(
            sa.select(leaves.c.data).where(leaves.c.checkpoint_id == cid).order_by(leaves.c.chunk)
        ):
            for leaf in unpack(data):
                tree.add(leaf)
        if cid not in by_id or tree.count != by_id[cid].cases or tree.root() != by_id[cid].root:
            log.warning(
                "the leaves of audit checkpoint %d do not make its root: the checkpoints are "
                "left as they are, and gridflow audit verify will report the resealed cases as "
                "rolled back",
                cid,
            )
            return
    roots: dict[int, str] = {}
    for cid in kept:
        tree = MerkleTree()
        for chunk, data in bind.execute(
            sa.select(leaves.c.chunk, leaves.c.data)
            .where(leaves.c.checkpoint_id == cid)
            .order_by(leaves.c.chunk)
        ):
            moved = [
                Leaf(leaf.case_id, leaf.seq, carried.get(leaf, leaf.head)) for leaf in unpack(data)
            ]
            for leaf in moved:
                tree.add(leaf)
            bind.execute(
                leaves.update()
                .where(leaves.c.checkpoint_id == cid, leaves.c.chunk == chunk)
                .values(data=pack(moved))
            )
        roots[cid] = tree.root()
    first = kept[0] if kept else None
    previous: AuditCheckpoint | None = None
    for cp in rows:
        if first is not None and cp.id >= first:
            cp.root = roots.get(cp.id, cp.root)
            cp.prev_digest = digest(statement(previous)) if previous is not None else None
            cp.signature = signer.sign(canonical(statement(cp)))
            bind.execute(
                checkpoints.update()
                .where(checkpoints.c.id == cp.id)
                .values(root=cp.root, prev_digest=cp.prev_digest, signature=cp.signature)
            )
        previous = cp
    log.info("audit checkpoints %s carried over to the resealed heads and signed again", kept)
