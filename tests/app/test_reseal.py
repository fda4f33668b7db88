"""Migration 0017 on a database sealed the way it was before: every chain that verifies is sealed
again with personal fields as commitments (and can then be erased); a chain that did not verify
is left exactly as it was, its faults still named; the audit checkpoints taken before follow
the resealed heads."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from app.cases.audit import GENESIS, chain_hash, verify
from app.cases.checkpoint_take import take
from app.cases.checkpoint_verify import verify_checkpoints
from app.cases.checkpoints import CheckpointKey
from app.models import Case, CaseEvent
from app.platform.db import Database, alembic_config
from app.privacy.erase import erase_resident
from tests.app.residents import feedback, file_report, resolve
from tests.conftest import Configured

RESEAL = "0017"  # the revision that reseals the chains


def _downgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


async def problems(db: Database, key: bytes) -> list[tuple[str, int | None, str]]:
    async with db.reader() as s:
        result = await verify(s, key)
    return sorted((p.case_id, p.seq, p.kind) for p in result.problems)


async def seal_as_before(db: Database, key: bytes) -> None:
    """Every chain sealed as before commitments: each event's whole content hashed."""
    async with db.transaction() as uow:
        s = uow.session
        for case in list(await s.scalars(select(Case))):
            prev = GENESIS
            for event in await s.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
            ):
                event.commitments = None
                event.prev_hash, event.hash = prev, chain_hash(key, prev, event)
                prev = event.hash
            case.head_hash = prev


async def test_the_migration_reseals_intact_chains_and_leaves_a_tampered_one(
    configured: Configured,
) -> None:
    async with configured() as h:
        url, key = h.settings.database_url, h.settings.audit_key()
        kept = await file_report(h, "resident-k", 0, description="墙上乱贴广告")
        await resolve(h, kept["case_id"])
        await feedback(h, "resident-k", kept["id"], satisfied=False, comment="还没撕干净")
        tampered = await file_report(h, "resident-t", 1, description="共享单车乱停")
        await h.offered_task(tampered["case_id"])
    db = Database(url, audit_key=key)
    try:
        await seal_as_before(db, key)
        async with db.transaction() as uow:
            await uow.session.execute(
                update(CaseEvent)
                .where(CaseEvent.case_id == tampered["case_id"], CaseEvent.seq == 2)
                .values(actor="operator:mallory")
            )
        faults = await problems(db, key)
        assert faults == [(tampered["case_id"], 2, "edited")]
        signer = CheckpointKey(key)
        for _ in range(2):  # two checkpoints of the chains as they were, both with leaves
            assert await take(db, signer, h.clock.now(), keep_leaves=24) is not None
            h.clock.advance(60)
        down = ScriptDirectory.from_config(alembic_config()).get_revision(RESEAL).down_revision
        async with db.engine.begin() as conn:
            await conn.run_sync(_downgrade, str(down))
        await db.upgrade()  # with the key: Database hands it to the migration

        assert await problems(db, key) == faults  # the tampered chain as it was
        # The checkpoints name the new heads, hold, and the next finds nothing amiss.
        assert (await verify_checkpoints(db, signer)).problems == []
        taken = await take(db, signer, h.clock.now(), keep_leaves=24)
        assert taken is not None and taken.faults == [] and taken.rolled_back == 0
        async with db.reader() as s:
            events = list(await s.scalars(select(CaseEvent).order_by(CaseEvent.id)))
        mine = [e for e in events if e.case_id == kept["case_id"]]
        theirs = [e for e in events if e.case_id == tampered["case_id"]]
        assert mine[0].type == "CaseOpened" and set(mine[0].commitments or {}) == {"lat", "lon"}
        reopened = next(e for e in mine if e.type == "CaseReopened")
        assert set(reopened.commitments or {}) == {"actor", "comment"}
        assert all(e.commitments is None for e in theirs)

        # The resealed chain takes an erasure and still verifies.
        async with db.transaction() as uow:
            erased = await erase_resident(uow, h.clock.now(), "resident-k", coarsen_m=100)
        assert erased.fields >= 2
        assert await problems(db, key) == faults
        assert (await verify_checkpoints(db, signer)).problems == []
    finally:
        await db.dispose()
