"""The tamper-evident history: `gridflow audit verify` names every edited, inserted or deleted
event."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from app.cases.audit import GENESIS, verify
from app.cli import main
from app.models import Case, CaseEvent
from tests.harness import CITY_POINT, Harness


async def accepted_case(h: Harness, resident: str, lon_shift: float) -> str:
    point = {"lat": CITY_POINT["lat"], "lon": CITY_POINT["lon"] + lon_shift}
    report = await h.report(resident=resident, point=point)
    case_id = await h.case_of(report["id"])
    task = await h.offered_task(case_id)
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/accept", headers=h.auth("worker", task["worker_id"])
    )
    assert r.status_code == 200
    await h.case_where(case_id, lambda c: c["status"] == "accepted")
    return case_id


async def problems(h: Harness) -> list[tuple[str, int | None, str]]:
    async with h.runtime.db.reader() as s:
        result = await verify(s, h.settings.audit_key())
    found = [(p.case_id, p.seq, p.kind) for p in result.problems or []]
    return sorted(found, key=lambda p: (p[0], p[1] or 0, p[2]))


async def test_an_untouched_history_verifies_and_every_kind_of_tampering_is_named(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [await accepted_case(h, f"r{n}", n * 0.004) for n in range(4)]
    assert await problems(h) == []
    async with h.runtime.db.reader() as s:
        first = await s.scalar(
            select(CaseEvent).where(CaseEvent.case_id == cases[0], CaseEvent.seq == 1)
        )
        seqs = {c: (await s.get(Case, c)).seq for c in cases}  # type: ignore[union-attr]
    assert first is not None and first.prev_hash == GENESIS and first.hash
    assert all(n >= 3 for n in seqs.values())

    a, b, c, d = cases
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        # a: an event's content edited in place
        await s.execute(
            update(CaseEvent)
            .where(CaseEvent.case_id == a, CaseEvent.seq == 2)
            .values(data={"worker_id": "someone-else"})
        )
        # b: an event in the middle deleted
        await s.execute(delete(CaseEvent).where(CaseEvent.case_id == b, CaseEvent.seq == 2))
        # c: an event inserted at the end
        last = await s.scalar(
            select(CaseEvent).where(CaseEvent.case_id == c, CaseEvent.seq == seqs[c])
        )
        assert last is not None
        s.add(
            CaseEvent(
                event_id=str(uuid.uuid4()),
                case_id=c,
                seq=seqs[c] + 1,
                type="CaseClosed",
                version=1,
                occurred_at=last.occurred_at + timedelta(minutes=1),
                actor="operator:mallory",
                grid_code=last.grid_code,
                category=last.category,
                data={},
                prev_hash=last.hash,
                hash="f" * 64,
            )
        )
        # d: the newest event deleted
        await s.execute(delete(CaseEvent).where(CaseEvent.case_id == d, CaseEvent.seq == seqs[d]))

    found = await problems(h)
    assert (a, 2, "edited") in found
    assert (b, 2, "missing") in found and (b, 3, "broken_link") in found
    assert (c, seqs[c] + 1, "inserted") in found and (c, seqs[c] + 1, "edited") in found
    assert (c, None, "head_mismatch") in found
    assert (d, seqs[d], "missing") in found and (d, None, "head_mismatch") in found
    assert {case for case, *_ in found} == {a, b, c, d}
    assert not any(case == a and kind != "edited" for case, _, kind in found)

    # The command says the same and exits 1.
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(h.settings.data_dir))
    if h.settings.db.url:
        monkeypatch.setenv("GRIDFLOW_DB__URL", h.settings.db.url)
    assert await asyncio.to_thread(main, ["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"edited: case {a} event 2" in out and f"case {d}" in out
    assert f"{len(found)} problem(s)" in out


async def test_the_command_passes_an_intact_history(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await accepted_case(h, "r9", 0.0)
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(h.settings.data_dir))
    if h.settings.db.url:
        monkeypatch.setenv("GRIDFLOW_DB__URL", h.settings.db.url)
    assert await asyncio.to_thread(main, ["audit", "verify"]) == 0
    assert "1 cases" in capsys.readouterr().out


async def test_a_key_other_than_the_sealing_one_finds_every_event_forged(h: Harness) -> None:
    await accepted_case(h, "r8", 0.0)
    async with h.runtime.db.reader() as s:
        result = await verify(s, b"k" * 40)
    assert result.problems and {p.kind for p in result.problems} == {"edited"}
    # every event, each named once or more (its hash, and each personal field's commitment)
    assert len({p.seq for p in result.problems}) == result.events
