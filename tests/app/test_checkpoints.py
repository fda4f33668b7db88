"""Signed checkpoints of every case's head: a case deleted with all its rows, or rolled back,
is caught; a checkpoint changed or removed is caught; growth is not a fault; one dispatcher
takes each checkpoint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from app.cases.audit import chain_hash
from app.cases.audit import verify as verify_chains
from app.cases.checkpoint_take import CheckpointKeeper, take
from app.cases.checkpoint_verify import export, verify_anchor, verify_checkpoints
from app.cases.checkpoints import (
    CHUNK,
    CheckpointKey,
    Leaf,
    canonical,
    merkle_root,
    pack,
    statement,
    unpack,
)
from app.cli import main
from app.models import (
    AuditCheckpoint,
    AuditCheckpointLeaves,
    Case,
    CaseEvent,
    Feedback,
    Photo,
    Report,
    SlaTimer,
    Task,
)
from app.platform.db import Database
from tests.app.test_audit import accepted_case
from tests.harness import CITY_POINT, Harness

# --- the format, without a database ---------------------------------------------------------


def _rfc6962(hashes: list[bytes]) -> bytes:
    """RFC 6962's Merkle Tree Hash, written as the RFC defines it (recursively)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _rfc6962(hashes[:k]) + _rfc6962(hashes[k:])).digest()


def _leaf(n: int) -> Leaf:
    return Leaf(
        str(uuid.UUID(int=n * 7919 + 1)), n % 9 + 1, hashlib.sha256(bytes([n % 256])).digest()
    )


def test_the_streamed_root_is_rfc_6962s_for_every_size() -> None:
    for n in [*range(0, 40), 255, 256, 257, 1000]:
        leaves = sorted((_leaf(i) for i in range(n)), key=lambda leaf: leaf.case_id)
        expected = _rfc6962([leaf.hash() for leaf in leaves]).hex()
        assert merkle_root(leaves) == expected, n
    one = _leaf(1)
    # A leaf's hash is domain-separated from a node's, and covers the id, seq and head.
    assert (
        one.hash()
        == hashlib.sha256(
            b"\x00" + bytes([0, 36]) + one.case_id.encode() + one.seq.to_bytes(4, "big") + one.head
        ).digest()
    )
    assert merkle_root([one]) != merkle_root([Leaf(one.case_id, one.seq + 1, one.head)])


def test_chunks_pack_back_to_their_leaves_in_about_62_bytes_a_case() -> None:
    leaves = sorted((_leaf(i) for i in range(CHUNK)), key=lambda leaf: leaf.case_id)
    leaves.append(Leaf("非-uuid-案件", 0, bytes(32)))
    data = pack(leaves)
    assert unpack(data) == leaves
    assert len(data) / len(leaves) < 64
    with pytest.raises(ValueError):
        unpack(data[:-5])


def test_the_key_signs_deterministically_and_depends_on_the_audit_key() -> None:
    a, b = CheckpointKey(b"a" * 40), CheckpointKey(b"b" * 40)
    assert a.sign(b"statement") == CheckpointKey(b"a" * 40).sign(b"statement")
    assert a.public != b.public and a.key_id != b.key_id


# --- against a real database ----------------------------------------------------------------


def key_of(h: Harness) -> CheckpointKey:
    return CheckpointKey(h.settings.audit_key())


async def checkpoint(h: Harness, keep_leaves: int = 24) -> AuditCheckpoint:
    h.clock.advance(60)
    cp = await take(h.runtime.db, key_of(h), h.clock.now(), keep_leaves=keep_leaves)
    assert cp is not None
    return cp


async def faults(h: Harness) -> list[tuple[str | None, str]]:
    report = await verify_checkpoints(h.runtime.db, key_of(h))
    return sorted(((p.case_id, p.kind) for p in report.problems), key=lambda p: (p[0] or "", p[1]))


async def chains_intact(h: Harness) -> bool:
    async with h.runtime.db.reader() as s:
        return not (await verify_chains(s, h.settings.audit_key())).problems


async def delete_whole_case(h: Harness, case_id: str) -> None:
    """Every row of the case, children first, as someone with write access would."""
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        reports = list(await s.scalars(select(Report.id).where(Report.case_id == case_id)))
        assert reports
        await s.execute(delete(Feedback).where(Feedback.case_id == case_id))
        await s.execute(delete(SlaTimer).where(SlaTimer.case_id == case_id))
        await s.execute(delete(Task).where(Task.case_id == case_id))
        await s.execute(delete(CaseEvent).where(CaseEvent.case_id == case_id))
        await s.execute(delete(Photo).where(Photo.report_id.in_(reports)))
        await s.execute(delete(Report).where(Report.id.in_(reports)))
        await s.execute(delete(Case).where(Case.id == case_id))


async def roll_back(h: Harness, case_id: str, to_seq: int) -> None:
    """Cut a case back to event `to_seq`, its head moved back to match: no key needed."""
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        head = await s.scalar(
            select(CaseEvent.hash).where(CaseEvent.case_id == case_id, CaseEvent.seq == to_seq)
        )
        await s.execute(
            delete(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.seq > to_seq)
        )
        await s.execute(update(Case).where(Case.id == case_id).values(seq=to_seq, head_hash=head))


async def test_a_case_deleted_with_all_its_rows_is_caught(h: Harness) -> None:
    a, b, c = [await accepted_case(h, f"r{n}", n * 0.004) for n in range(3)]
    first = await checkpoint(h)
    assert (first.id, first.cases, first.vanished, first.faults) == (1, 3, 0, [])
    assert await faults(h) == []

    await delete_whole_case(h, b)
    assert await chains_intact(h)  # the per-case chain cannot see it: nothing of it is left
    assert await faults(h) == [(b, "vanished")]

    # A checkpoint taken since records it, so later ones need not hold the case to say so.
    second = await checkpoint(h)
    assert (second.cases, second.vanished, second.rolled_back) == (2, 1, 0)
    assert second.faults == [{"case_id": b, "kind": "vanished", "seq": 3, "now": None}]
    assert await faults(h) == [(b, "vanished")]
    third = await checkpoint(h)
    assert third.faults == [] and await faults(h) == [(b, "vanished")]
    assert {a, c} <= {leaf.case_id for leaf in await leaves_of(h, third.id)}


async def leaves_of(h: Harness, checkpoint_id: int) -> list[Leaf]:
    async with h.runtime.db.reader() as s:
        rows = await s.scalars(
            select(AuditCheckpointLeaves)
            .where(AuditCheckpointLeaves.checkpoint_id == checkpoint_id)
            .order_by(AuditCheckpointLeaves.chunk)
        )
        return [leaf for row in rows for leaf in unpack(row.data)]


async def test_a_case_rolled_back_consistently_with_its_chain_is_caught(h: Harness) -> None:
    a, b = [await accepted_case(h, f"r{n}", n * 0.004) for n in range(2)]
    await checkpoint(h)
    await roll_back(h, a, 2)
    assert await chains_intact(h)  # a shorter chain, its head where it ends
    assert await faults(h) == [(a, "rolled_back")]

    # Rolled back and written on with the key: the chain holds, the checkpoint does not.
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        case = await s.get(Case, b)
        last = await s.scalar(select(CaseEvent).where(CaseEvent.case_id == b, CaseEvent.seq == 2))
        assert case is not None and last is not None and case.seq >= 3
        await s.execute(delete(CaseEvent).where(CaseEvent.case_id == b, CaseEvent.seq > 2))
        forged = CaseEvent(
            event_id=str(uuid.uuid4()),
            case_id=b,
            seq=3,
            type="CaseClosed",
            version=1,
            occurred_at=last.occurred_at + timedelta(minutes=1),
            actor="operator:mallory",
            grid_code=last.grid_code,
            category=last.category,
            data={},
        )
        forged.prev_hash = last.hash
        forged.hash = chain_hash(h.settings.audit_key(), last.hash or "", forged)
        s.add(forged)
        case.seq, case.head_hash = 3, forged.hash
    assert await chains_intact(h)
    report = await verify_checkpoints(h.runtime.db, key_of(h))
    assert {(p.case_id, p.kind) for p in report.problems} == {
        (a, "rolled_back"),
        (b, "rolled_back"),
    }
    assert any("rewritten" in p.message for p in report.problems if p.case_id == b)
    assert any("rolled back to event 2" in p.message for p in report.problems if p.case_id == a)


async def test_growth_after_a_checkpoint_is_not_a_fault_nor_old_leaves_dropped(h: Harness) -> None:
    a = await accepted_case(h, "r1", 0.0)
    await checkpoint(h)
    # New cases, and new events on a case the checkpoint holds.
    await accepted_case(h, "r2", 0.004)
    report = await h.report(resident="r3", point={"lat": 30.2431, "lon": 120.1612})
    await h.case_of(report["id"])
    async with h.runtime.db.reader() as s:
        task = await s.scalar(select(Task).where(Task.case_id == a))
        before = await s.scalar(select(Case.seq).where(Case.id == a))
    assert task is not None and before is not None
    r = await h.client.post(
        f"/v1/tasks/{task.id}/arrive",
        headers=h.auth("worker", task.worker_id),
        json={"location": CITY_POINT},
    )
    assert r.status_code == 200, r.text
    async with h.runtime.db.reader() as s:
        assert (await s.scalar(select(Case.seq).where(Case.id == a)) or 0) > before
    assert await faults(h) == []
    second = await checkpoint(h)
    assert second.faults == [] and second.cases == 3
    assert await faults(h) == []

    # Leaves past the number kept are dropped, and that is no fault.
    for _ in range(2):
        await checkpoint(h, keep_leaves=2)
    async with h.runtime.db.reader() as s:
        kept = sorted(set(await s.scalars(select(AuditCheckpointLeaves.checkpoint_id))))
    assert kept == [3, 4]
    assert await faults(h) == []


async def test_a_changed_or_removed_checkpoint_is_caught(h: Harness) -> None:
    await accepted_case(h, "r1", 0.0)
    for _ in range(3):
        await checkpoint(h)
    assert await faults(h) == []
    db = h.runtime.db

    async with db.transaction() as uow:  # a root edited: the signature no longer holds
        await uow.session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.id == 3).values(root="0" * 64)
        )
    kinds = await faults(h)
    assert (None, "checkpoint_signature") in kinds and (None, "checkpoint_leaves") in kinds

    async with db.transaction() as uow:  # put back, but a signature edited
        cp = await uow.session.get(AuditCheckpoint, 3)
        assert cp is not None
        leaves = await leaves_of(h, 3)
        cp.root = merkle_root(leaves)
        cp.signature = "0" * 128
    assert await faults(h) == [(None, "checkpoint_signature")]

    # Re-signed under another key: still not this installation's.
    other = CheckpointKey(b"m" * 40)
    async with db.transaction() as uow:
        cp = await uow.session.get(AuditCheckpoint, 3)
        assert cp is not None
        cp.signature = other.sign(canonical(statement(cp)))
    assert await faults(h) == [(None, "checkpoint_signature")]
    async with db.transaction() as uow:
        cp = await uow.session.get(AuditCheckpoint, 3)
        assert cp is not None
        cp.signature = key_of(h).sign(canonical(statement(cp)))
    assert await faults(h) == []

    async with db.transaction() as uow:  # the leaves edited: no longer the signed root
        row = await uow.session.get(AuditCheckpointLeaves, (3, 0))
        assert row is not None
        (leaf,) = unpack(row.data)
        row.data = pack([Leaf(leaf.case_id, leaf.seq + 5, leaf.head)])
    assert await faults(h) == [(None, "checkpoint_leaves"), (leaf.case_id, "rolled_back")]
    async with db.transaction() as uow:
        row = await uow.session.get(AuditCheckpointLeaves, (3, 0))
        assert row is not None
        row.data = pack([leaf])
    assert await faults(h) == []

    async with db.transaction() as uow:  # one in the middle deleted
        await uow.session.execute(
            delete(AuditCheckpointLeaves).where(AuditCheckpointLeaves.checkpoint_id == 2)
        )
        await uow.session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.id == 2))
    assert await faults(h) == [(None, "checkpoint_link")]

    # The newest one's leaves changed, then a checkpoint taken: it records that, signed.
    async with db.transaction() as uow:
        row = await uow.session.get(AuditCheckpointLeaves, (3, 0))
        assert row is not None
        row.data = pack([])
    fourth = await checkpoint(h)
    assert {f["kind"] for f in fourth.faults} == {"checkpoint_leaves"}
    messages = [f["message"] for f in fourth.faults]
    assert "chunk 0 holds 0 leaves, not 1" in messages
    assert "the leaves of checkpoint 3 do not make its signed root" in messages
    assert (None, "checkpoint_leaves") in await faults(h)


async def test_two_dispatchers_take_one_checkpoint_per_interval_and_a_keeper_its_own(
    h: Harness,
) -> None:
    await accepted_case(h, "r1", 0.0)
    url = h.runtime.db.url
    others = [Database(url, audit_key=h.settings.audit_key()) for _ in range(2)]
    keepers = [
        CheckpointKeeper(db, key_of(h), h.clock, interval_s=600, keep_leaves=24) for db in others
    ]
    try:
        taken = await asyncio.gather(*(k.take_if_due() for k in keepers))
        assert sum(cp is not None for cp in taken) == 1
        h.clock.advance(599)
        assert await asyncio.gather(*(k.take_if_due() for k in keepers)) == [None, None]
        h.clock.advance(1)
        taken = await asyncio.gather(*(k.take_if_due() for k in keepers))
        assert sum(cp is not None for cp in taken) == 1
        # Both started from the same newest one and only one stored: the other's is dropped.
        cps = await asyncio.gather(
            *(take(db, key_of(h), h.clock.now(), keep_leaves=24, due_after_s=0) for db in others)
        )
        assert sum(cp is not None for cp in cps) >= 1
        async with h.runtime.db.reader() as s:
            ids = list(await s.scalars(select(AuditCheckpoint.id).order_by(AuditCheckpoint.id)))
        assert ids == list(range(1, len(ids) + 1)) and len(ids) in (3, 4)
        assert await faults(h) == []
    finally:
        for db in others:
            await db.dispose()

    # Left to itself, a keeper takes one whenever the newest is an interval old.
    keeper = CheckpointKeeper(
        h.runtime.db, key_of(h), h.clock, interval_s=3600, keep_leaves=24, poll_s=0.01
    )

    async def count() -> int:
        async with h.runtime.db.reader() as s:
            return int(await s.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0)

    have = await count()
    await keeper.start()
    try:
        h.clock.advance(3600)
        await h.eventually(lambda: _at_least(count, have + 1), what="a checkpoint when due")
        h.clock.advance(3600)
        await h.eventually(lambda: _at_least(count, have + 2), what="the next one")
    finally:
        await keeper.stop()


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_an_exported_checkpoint_catches_what_the_database_hides(h: Harness) -> None:
    a, b = [await accepted_case(h, f"r{n}", n * 0.004) for n in range(2)]
    await checkpoint(h)
    db, key = h.runtime.db, key_of(h)
    bare = await export(db, key, None, with_leaves=False)
    full = await export(db, key, 1, with_leaves=True)
    assert bare["statement"]["cases"] == 2 and "leaves" not in bare
    assert [leaf[0] for leaf in full["leaves"]] == sorted([a, b])
    assert await verify_anchor(db, key, bare) == (2, [])
    assert await verify_anchor(db, key, full) == (2, [])

    # Someone with the key deletes a case and rewrites every checkpoint to match.
    await delete_whole_case(h, a)
    async with db.transaction() as uow:
        await uow.session.execute(delete(AuditCheckpointLeaves))
        await uow.session.execute(delete(AuditCheckpoint))
    await checkpoint(h)
    assert await faults(h) == []  # the database alone now looks intact
    _, found = await verify_anchor(db, key, full)
    assert {(p.case_id, p.kind) for p in found} == {(None, "anchor_mismatch"), (a, "vanished")}
    _, found = await verify_anchor(db, key, bare)
    assert [p.kind for p in found] == ["anchor_mismatch"]

    forged = json.loads(json.dumps(full))
    forged["statement"]["cases"] = 1
    forged["leaves"] = [x for x in forged["leaves"] if x[0] != a]
    _, found = await verify_anchor(db, key, forged)
    assert "anchor_signature" in [p.kind for p in found]
    with pytest.raises(ValueError):
        await verify_anchor(db, key, {"format": "something else"})


async def test_the_commands(
    h: Harness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = await accepted_case(h, "r1", 0.0)
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(h.settings.data_dir))
    if h.settings.db.url:
        monkeypatch.setenv("GRIDFLOW_DB__URL", h.settings.db.url)

    async def run(*args: str) -> tuple[int, str]:
        code = await asyncio.to_thread(main, list(args))
        return code, capsys.readouterr().out

    code, out = await run("audit", "checkpoint", "--json")
    assert code == 0 and json.loads(out)["cases"] == 1
    code, out = await run("audit", "checkpoints")
    assert code == 0 and "leaves kept" in out
    anchor = tmp_path / "cp.json"
    assert (await run("audit", "export", "--leaves", "--out", str(anchor)))[0] == 0
    code, out = await run("audit", "verify", "--anchor", str(anchor))
    assert code == 0 and "1 checkpoint(s) (newest 1), the anchor" in out

    await delete_whole_case(h, a)
    code, out = await run("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["vanished"]
    assert report["checkpoints"]["newest"] == 1
    code, out = await run("audit", "checkpoint")
    assert code == 1 and "1 case(s) vanished" in out
    code, out = await run("audit", "verify", "--anchor", str(anchor))
    assert code == 1 and f"vanished: case {a}: gone since the exported checkpoint 1" in out

    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "no"}')
    assert (await run("audit", "verify", "--anchor", str(bad)))[0] == 2
    assert (await run("audit", "export", "--checkpoint", "99"))[0] == 2


def test_the_keeper_runs_where_the_engine_runs_unless_turned_off(tmp_path: Path) -> None:
    from app.runtime import Runtime
    from tests.harness import make_settings

    def keeper(**overrides: Any) -> CheckpointKeeper | None:
        return Runtime(make_settings(tmp_path / "data", **overrides)).checkpoints

    every_hour = {"checkpoint_interval_s": 3600, "checkpoint_keep_leaves": 5}
    taking = keeper(audit=every_hour)
    assert taking is not None and (taking.interval_s, taking.keep_leaves) == (3600, 5)
    assert taking.poll_s == 60
    assert keeper(audit=every_hour, run_engine=False) is None  # `gridflow api`
    assert keeper(audit={"checkpoint_interval_s": 0}) is None
