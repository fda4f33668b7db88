"""`GET /v1/stats` on a small history whose every figure is computed by hand below.

Four cases, each started when the one before has settled (t = seconds after its opening):

- A, fire lane, grid units[1]: accepted t=40, on site t=100, resolved t=200, resident satisfied
  t=300 → closed at 300, on time (close goal 900 s), right first time.
- B, fire lane, grid units[2]: first offer declined t=20, second accepted t=50, on site t=250,
  resolved t=1000 (close clock breached at 900), resident not satisfied t=1100 → reopened;
  accepted t=1120, on site t=1150, resolved t=1200, satisfied t=1300 → closed at 1300, late,
  not right first time, reopened.
- C, illegal parking, grid units[3]: accepted t=30, nothing more → open.
- D, road damage (the roads department, verified): accepted t=60, on site t=120, resolved
  t=300, verification failed t=400 (rework), accepted t=420, on site t=430, resolved t=500,
  verification passed t=600, satisfied t=700 → closed at 700, on time, right first time,
  reworked.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.cli import main
from tests.dispatch.test_departments import inspector_near, road_case
from tests.dispatch.test_sla import report_in_single_worker_grid
from tests.harness import Harness, environment_of


class Story:
    """Drives one case on the shared manual clock, at seconds after its opening."""

    def __init__(self, h: Harness, case_id: str, report_id: str, resident: str) -> None:
        self.h, self.case_id, self.report_id, self.resident = h, case_id, report_id, resident
        self.opened = h.clock.now()
        self.task: dict[str, Any] = {}

    def at(self, t: float) -> None:
        target = self.opened + timedelta(seconds=t)
        assert target >= self.h.clock.now()
        self.h.clock.advance((target - self.h.clock.now()).total_seconds())

    async def offered(self, not_worker: str | None = None) -> dict[str, Any]:
        self.task = await self.h.offered_task(self.case_id, not_worker=not_worker)
        return self.task

    async def act(self, t: float, action: str, **body: Any) -> None:
        self.at(t)
        url = f"/v1/tasks/{self.task['id']}/{action}"
        worker = self.h.auth("worker", self.task["worker_id"])
        r = await self.h.client.post(url, json=body or None, headers=worker)
        assert r.status_code == 200, r.text

    async def work(self, accept: float, arrive: float, resolve: float) -> None:
        await self.offered()
        await self.act(accept, "accept")
        case = await self.h.case(self.case_id)
        await self.act(arrive, "arrive", location=case["location"])
        await self.act(resolve, "resolve", note="处理完毕")

    async def rate(self, t: float, satisfied: bool) -> None:
        self.at(t)
        r = await self.h.client.post(
            f"/v1/reports/{self.report_id}/feedback",
            json={"satisfied": satisfied, "score": 5 if satisfied else 2},
            headers=self.h.auth("resident", self.resident),
        )
        assert r.status_code == 200, r.text

    async def verify(self, t: float, who: dict[str, str], passed: bool, **extra: Any) -> None:
        self.at(t)
        r = await self.h.client.post(
            f"/v1/cases/{self.case_id}/verify",
            json={"passed": passed, "note": "核查", **extra},
            headers=who,
        )
        assert r.status_code == 200, r.text


async def history(h: Harness) -> dict[str, Any]:
    """Play the four cases; returns their ids and the opening time of D."""
    report, case_a, _ = await report_in_single_worker_grid(h, "fire_lane_blocked", n=1)
    a = Story(h, case_a, report["id"], "erin")
    await a.work(40, 100, 200)
    await a.rate(300, True)
    h.clock.advance(3600)

    report, case_b, _ = await report_in_single_worker_grid(h, "fire_lane_blocked", n=2)
    b = Story(h, case_b, report["id"], "erin")
    first = await b.offered()
    await b.act(20, "decline", reason="在处理别的")
    await b.offered(not_worker=first["worker_id"])
    await b.act(50, "accept")
    location = (await h.case(case_b))["location"]
    await b.act(250, "arrive", location=location)
    b.at(901)
    await h.sweep()  # the close clock breaches (and its escalation step)
    await b.act(1000, "resolve", note="车已挪走")
    await b.rate(1100, False)
    await b.work(1120, 1150, 1200)
    await b.rate(1300, True)
    h.clock.advance(3600)

    report, case_c, _ = await report_in_single_worker_grid(h, "illegal_parking", n=3)
    c = Story(h, case_c, report["id"], "erin")
    await c.offered()
    await c.act(30, "accept")
    h.clock.advance(3600)

    case_d, report_d, point = await road_case(h, "ivy")
    d = Story(h, case_d, report_d, "ivy")
    d_opened = d.opened
    await d.work(60, 120, 300)
    inspector = await inspector_near(h, point)
    await d.verify(400, h.auth("worker", inspector), False, location=point)
    await d.work(420, 430, 500)
    await d.verify(600, h.auth("operator", "ops"), True)
    await d.rate(700, True)
    return {"a": case_a, "b": case_b, "c": case_c, "d": case_d, "d_opened": d_opened}


TOTAL = {
    "key": None,
    "received": 4,
    "dispatched": 4,
    "closed": 3,  # A, B, D
    "closed_on_time": 2,  # A, D (B's close clock was breached)
    "on_time_rate": 0.6667,
    "right_first_time": 3,  # A, C, D (B's first offer was declined)
    "right_first_time_rate": 0.75,
    "resolved": 3,
    "reopened": 1,  # B
    "reworked": 1,  # D
    "rework_rate": 0.6667,  # B or D, of the 3 resolved
    "feedback": 4,  # A yes, B no, B yes, D yes
    "satisfied": 3,
    "satisfaction_rate": 0.75,
    "accept_median_s": 40.0,  # of 30, 40, 50, 60: rank ceil(0.5 × 4) = 2
    "accept_p90_s": 60.0,  # rank ceil(0.9 × 4) = 4
    "arrive_median_s": 120.0,  # of 100, 120, 250: rank 2
    "arrive_p90_s": 250.0,  # rank 3
    "close_median_s": 700.0,  # of 300, 700, 1300
    "close_p90_s": 1300.0,
}


async def stats(h: Harness, **params: Any) -> Any:
    r = await h.client.get("/v1/stats", params=params, headers=h.auth("operator", "ops"))
    assert r.status_code == 200, r.text
    return r


async def test_every_figure_on_a_hand_computed_history(
    h: Harness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    start = h.clock.now() - timedelta(seconds=1)
    ids = await history(h)
    window = {"from": start.isoformat(), "to": (h.clock.now() + timedelta(1)).isoformat()}

    body = (await stats(h, **window)).json()
    assert body["total"] == TOTAL
    assert body["groups"] == [] and body["by"] is None
    assert body["from"].startswith(start.isoformat()[:19])

    by_department = (await stats(h, by="department", **window)).json()
    roads, grid_workers = by_department["groups"]
    assert roads["key"] == "roads" and grid_workers["key"] is None
    assert (roads["received"], roads["closed_on_time"], roads["on_time_rate"]) == (1, 1, 1.0)
    assert (roads["reworked"], roads["rework_rate"], roads["right_first_time_rate"]) == (
        1,
        1.0,
        1.0,
    )
    assert (grid_workers["received"], grid_workers["closed"], grid_workers["on_time_rate"]) == (
        3,
        2,
        0.5,
    )
    assert by_department["total"] == TOTAL

    fire = next(
        g
        for g in (await stats(h, by="category", **window)).json()["groups"]
        if g["key"] == "fire_lane_blocked"
    )
    assert fire | {"key": None} == {
        **TOTAL,
        "received": 2,
        "dispatched": 2,
        "closed": 2,
        "closed_on_time": 1,
        "on_time_rate": 0.5,
        "right_first_time": 1,
        "right_first_time_rate": 0.5,
        "resolved": 2,
        "reopened": 1,
        "reworked": 0,
        "rework_rate": 0.5,
        "feedback": 3,
        "satisfied": 2,
        "satisfaction_rate": 0.6667,
        "accept_median_s": 40.0,
        "accept_p90_s": 50.0,
        "arrive_median_s": 100.0,
        "arrive_p90_s": 250.0,
        "close_median_s": 300.0,
        "close_p90_s": 1300.0,
    }

    units = h.runtime.grids.require().units
    by_grid = {g["key"]: g for g in (await stats(h, by="grid", **window)).json()["groups"]}
    assert by_grid[units[3].code]["received"] == 1 and by_grid[units[3].code]["closed"] == 0
    assert by_grid[units[3].code]["on_time_rate"] is None  # nothing closed: no rate
    streets = (await stats(h, by="street", **window)).json()["groups"]
    assert sum(g["received"] for g in streets) == 4
    assert all(len(g["key"]) == 9 for g in streets)

    # The range counts cases by their opening: from D's opening, D alone.
    only_d = (await stats(h, **{**window, "from": ids["d_opened"].isoformat()})).json()
    assert only_d["total"]["received"] == 1 and only_d["total"]["reworked"] == 1

    r = await stats(h, by="category", format="csv", **window)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[-1]["key"] == "(total)"
    assert {k: rows[-1][k] for k in ("received", "on_time_rate", "close_p90_s")} == {
        "received": "4",
        "on_time_rate": "0.6667",
        "close_p90_s": "1300.0",
    }
    parking = next(row for row in rows if row["key"] == "illegal_parking")
    assert parking["closed"] == "0" and parking["on_time_rate"] == ""

    # `gridflow stats export` gives the same figures, read from the database.
    for name, value in environment_of(h.settings).items():
        monkeypatch.setenv(name, value)
    args = ["stats", "export", "--from", window["from"], "--to", window["to"], "--by", "category"]
    capsys.readouterr()
    assert await asyncio.to_thread(main, args) == 0
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out))) == rows
    out = tmp_path / "figures.json"
    assert await asyncio.to_thread(main, [*args, "--format", "json", "--out", str(out)]) == 0
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["total"] == TOTAL and len(exported["groups"]) == len(rows) - 1
    assert "4 cases" in capsys.readouterr().err
    # A date or time without a zone is the city's.
    city = ZoneInfo(h.settings.sla.calendar.timezone)
    local = [datetime.fromisoformat(window[k]).astimezone(city) for k in ("from", "to")]
    naive = [t.replace(tzinfo=None).isoformat() for t in local]
    args = ["stats", "export", "--from", naive[0], "--to", naive[1], "--by", "category"]
    assert await asyncio.to_thread(main, args) == 0
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out))) == rows
    reversed_range = ["stats", "export", "--from", window["to"], "--to", window["from"]]
    assert await asyncio.to_thread(main, reversed_range) == 2


async def test_bad_ranges_are_422_and_only_operators_read(h: Harness) -> None:
    ops = h.auth("operator", "ops")
    now = h.clock.now()
    backwards = {"from": now.isoformat(), "to": (now - timedelta(1)).isoformat()}
    r = await h.client.get("/v1/stats", params=backwards, headers=ops)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await h.client.get("/v1/stats", params={"from": "2026-01-01T00:00:00"}, headers=ops)
    assert r.status_code == 422  # no time zone
    r = await h.client.get("/v1/stats", params={"by": "planet"}, headers=ops)
    assert r.status_code == 422
    r = await h.client.get("/v1/stats", headers=h.auth("worker", "w-1"))
    assert r.status_code == 403
    empty = (await stats(h)).json()["total"]
    assert empty["received"] == 0 and empty["on_time_rate"] is None
