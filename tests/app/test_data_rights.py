"""A resident downloads what gridflow holds about them, and has it erased: personal fields go
from every row, photo file, idempotency answer and event payload, while the case histories
still verify and the figures do not move."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from app.cases.events import EventEnvelope, EventType, enqueue
from app.cli import main
from app.models import CaseEvent, Feedback, IdempotencyRecord, Photo, Report
from app.platform import topics
from app.platform.redact import redact
from tests.app.residents import (
    PHOTO,
    audit_problems,
    everything,
    feedback,
    file_report,
    resolve,
    stats,
)
from tests.harness import Harness, png_bytes

ALICE, BOB = "resident-a1ice", "resident-b0b"
HER_TEXT, HER_ADDRESS, HER_COMMENT = (
    "楼下垃圾桶满了，我家在3单元",
    "西湖区文三路 88 号",
    "还是没清干净",
)
HIS_TEXT = "路口的垃圾没人收"


async def test_the_export_holds_what_the_resident_filed_and_nothing_of_anyone_else(
    h: Harness,
) -> None:
    mine = await file_report(h, ALICE, 0, description=HER_TEXT, address=HER_ADDRESS, photo=PHOTO)
    theirs = await file_report(h, BOB, 1, description=HIS_TEXT, photo=png_bytes((50, 20)))
    r = await h.client.get("/v1/me/data", headers=h.auth("resident", ALICE))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["subject"] == ALICE
    [report] = data["reports"]
    assert report["id"] == mine["id"] and report["description"] == HER_TEXT
    assert report["address"] == HER_ADDRESS and not report["location_coarsened"]
    assert report["location_sent"]["crs"] == "wgs84"
    assert report["case"]["id"] == mine["case_id"]
    assert report["case"]["timeline"][0]["type"] == "CaseOpened"
    [photo] = report["photos"]
    got = await h.client.get(photo["url"], headers=h.auth("resident", ALICE))
    assert got.status_code == 200 and got.content[:4] == b"\x89PNG"
    text = r.text
    assert theirs["id"] not in text and theirs["case_id"] not in text and HIS_TEXT not in text
    assert BOB not in text
    # A resident with nothing filed gets an empty export, not someone else's.
    r = await h.client.get("/v1/me/data", headers=h.auth("resident", "nobody"))
    assert r.status_code == 200 and r.json()["reports"] == []


async def test_erasure_removes_personal_data_everywhere_and_keeps_history_and_figures(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alice: one report worked to closed, with a rework on her complaint; one still open.
    closed = await file_report(
        h, ALICE, 0, description=HER_TEXT, address=HER_ADDRESS, photo=PHOTO, key="k-1"
    )
    await resolve(h, closed["case_id"], key="accept-1")  # the worker's answer is kept by key
    await feedback(h, ALICE, closed["id"], satisfied=False, comment=HER_COMMENT)
    await resolve(h, closed["case_id"])
    await feedback(h, ALICE, closed["id"], satisfied=True)
    await h.case_where(closed["case_id"], lambda c: c["status"] == "closed")
    still_open = await file_report(h, ALICE, 2, description=HER_TEXT + "（二）")
    await h.offered_task(still_open["case_id"])
    his = await file_report(h, BOB, 1, description=HIS_TEXT, photo=PHOTO)
    async with h.runtime.db.reader() as s:
        precise = await s.get(Report, still_open["id"])
        [stored] = list(await s.scalars(select(Photo).where(Photo.report_id == closed["id"])))
        kept_open = (precise.lon, precise.lat) if precise else None
    photo_file = h.runtime.photos.path_for(stored.sha256, "png")
    assert photo_file.exists()
    await dead_letter(h, ALICE, closed["id"])
    before = await stats(h)
    assert await audit_problems(h) == []
    everything_before = await everything(h)
    assert ALICE in everything_before and HER_COMMENT in everything_before

    # Bob cannot erase Alice's data: erasing is always the caller's own.
    r = await h.client.post("/v1/me/erase", headers=h.auth("resident", "someone-else"))
    assert r.status_code == 200 and r.json()["reports"] == 0
    r = await h.client.post("/v1/me/erase", headers=h.auth("resident", ALICE))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["reports"] == 2 and answer["photos"] == 1
    assert sorted(answer["cases"]) == sorted([closed["case_id"], still_open["case_id"]])
    assert answer["locations_coarsened"] == 1  # the closed case's; the open one keeps it

    left = await everything(h)
    for gone in (ALICE, HER_TEXT, HER_ADDRESS, HER_COMMENT):
        assert gone not in left, gone
    # Bob's photo is the same bytes as Alice's: the file stays for him, his row too.
    assert photo_file.exists()
    async with h.runtime.db.reader() as s:
        reports = {r.id: r for r in await s.scalars(select(Report))}
        events = list(await s.scalars(select(CaseEvent).order_by(CaseEvent.id)))
        verdicts = list(await s.scalars(select(Feedback).order_by(Feedback.created_at)))
        keys = list(await s.scalars(select(IdempotencyRecord)))
        photos = list(await s.scalars(select(Photo).where(Photo.report_id.is_not(None))))
    done, waiting = reports[closed["id"]], reports[still_open["id"]]
    assert done.reporter_id is None and done.description == "" and done.address is None
    assert done.coarsened_at is not None and (done.lon_in, done.lat_in) == (done.lon, done.lat)
    assert waiting.reporter_id is None and waiting.coarsened_at is None
    assert (waiting.lon, waiting.lat) == kept_open
    assert reports[his["id"]].reporter_id == BOB and reports[his["id"]].description == HIS_TEXT
    assert [p.report_id for p in photos] == [his["id"]]
    assert [(v.satisfied, v.score, v.comment) for v in verdicts] == [
        (False, 2, None),
        (True, 5, None),
    ]
    assert not keys  # Alice's report answer and the worker's task view of her case
    opened = {e.case_id: e for e in events if e.type == EventType.CASE_OPENED}
    assert "lat" not in opened[closed["case_id"]].data
    assert "lat" in opened[still_open["case_id"]].data  # the worker still has to find it
    erased = [e for e in events if e.type == EventType.PERSONAL_DATA_ERASED]
    assert {e.case_id for e in erased} == {closed["case_id"], still_open["case_id"]}
    assert all(e.actor == "resident" for e in erased)
    assert not any(e.actor.startswith("resident:") for e in events if e.case_id != his["case_id"])

    # The histories verify, by the service and by the command; the figures have not moved.
    assert await audit_problems(h) == []
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(h.settings.data_dir))
    if h.settings.db.url:
        monkeypatch.setenv("GRIDFLOW_DB__URL", h.settings.db.url)
    assert await asyncio.to_thread(main, ["audit", "verify"]) == 0
    assert await stats(h) == before

    # Nothing left to export, and asking again removes nothing more.
    r = await h.client.get("/v1/me/data", headers=h.auth("resident", ALICE))
    assert r.json()["reports"] == []
    r = await h.client.post("/v1/me/erase", headers=h.auth("resident", ALICE))
    assert r.json() == {
        "reports": 0,
        "cases": [],
        "photos": 0,
        "event_fields": 0,
        "locations_coarsened": 0,
    }
    # Bob's own erasure deletes the photo file no row names any more.
    r = await h.client.post("/v1/me/erase", headers=h.auth("resident", BOB))
    assert r.json()["photos"] == 1 and not photo_file.exists()
    assert await audit_problems(h) == []


async def dead_letter(h: Harness, resident: str, report_id: str) -> None:
    """A ReportReceived given up on, as the engine writes it to the dead-letter topic."""
    received = EventEnvelope(
        type=EventType.REPORT_RECEIVED,
        occurred_at=h.clock.now(),
        actor=f"resident:{resident}",
        data={"report_id": report_id},
    )
    letter = received.model_copy(
        update={"data": {"original": received.model_dump(mode="json"), "error": "Boom: no"}}
    )
    async with h.runtime.db.transaction() as uow:
        enqueue(uow, topics.DEAD_LETTER, "33010600100101", letter)


async def test_an_erased_event_tampered_with_still_fails_and_so_does_an_unrecorded_erasure(
    h: Harness,
) -> None:
    hers = await file_report(h, ALICE, 0, description=HER_TEXT)
    his = await file_report(h, BOB, 1, description=HIS_TEXT)
    await resolve(h, hers["case_id"])
    await feedback(h, ALICE, hers["id"], satisfied=True)
    await h.case_where(hers["case_id"], lambda c: c["status"] == "closed")
    await h.offered_task(his["case_id"])
    r = await h.client.post("/v1/me/erase", headers=h.auth("resident", ALICE))
    assert r.status_code == 200
    assert await audit_problems(h) == []
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        opened = {
            e.case_id: e
            for e in await s.scalars(select(CaseEvent).where(CaseEvent.type == "CaseOpened"))
        }
        erased = opened[hers["case_id"]]
        # a value put back where one was erased, and another field changed
        await s.execute(
            update(CaseEvent)
            .where(CaseEvent.id == erased.id)
            .values(data={**erased.data, "lat": 30.0, "priority": 1})
        )
        # Bob's location removed by hand, as an erasure would, but with no record of it
        intact = opened[his["case_id"]]
        commitments = {
            k: ({"commitment": v["commitment"]} if k in ("lat", "lon") else v)
            for k, v in (intact.commitments or {}).items()
        }
        data = {k: v for k, v in intact.data.items() if k not in ("lat", "lon")}
        await s.execute(
            update(CaseEvent)
            .where(CaseEvent.id == intact.id)
            .values(data=data, commitments=commitments)
        )
    found = await audit_problems(h)
    assert (hers["case_id"], erased.seq, "edited") in found
    assert (his["case_id"], intact.seq, "erased_unrecorded") in found
    assert {case for case, *_ in found} == {hers["case_id"], his["case_id"]}


def test_a_position_in_a_url_never_reaches_a_log() -> None:
    line = redact('127.0.0.1:5 - "GET /v1/grids/locate?lat=30.2431&lon=120.1532&crs=gcj02"')
    assert "30.2431" not in line and "120.1532" not in line and "crs=gcj02" in line
