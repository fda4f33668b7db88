"""Residents' reports worked through the real server, for the data-rights tests."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from app.cases.audit import verify
from app.models import Base
from tests.harness import CITY_POINT, Harness, png_bytes


def point(n: int) -> dict[str, float]:
    """A point of the demo city, a few hundred metres east per n (another grid's workers)."""
    return {"lat": CITY_POINT["lat"], "lon": CITY_POINT["lon"] + n * 0.004}


async def file_report(
    h: Harness,
    resident: str,
    n: int,
    *,
    description: str,
    address: str | None = None,
    photo: bytes | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """A resident's report (multipart when it has a photo); the answer, with `case_id`."""
    body: dict[str, Any] = {
        "category": "garbage_overflow",
        "description": description,
        "location": point(n),
    }
    if address is not None:
        body["address"] = address
    headers = h.auth("resident", resident) | ({"Idempotency-Key": key} if key else {})
    if photo is None:
        r = await h.client.post("/v1/reports", json=body, headers=headers)
    else:
        files = [
            ("report", (None, json.dumps(body), "application/json")),
            ("photos", ("p.png", photo, "image/png")),
        ]
        r = await h.client.post("/v1/reports", files=files, headers=headers)
    assert r.status_code == 201, r.text
    report = dict(r.json())
    report["case_id"] = await h.case_of(report["id"])
    return report


async def resolve(h: Harness, case_id: str, *, key: str | None = None) -> str:
    """The offered worker accepts (with `key` as Idempotency-Key), arrives and resolves;
    the worker's id. The clock moves a minute first (a resolution after earlier feedback)."""
    h.clock.advance(60)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    keyed = worker | ({"Idempotency-Key": key} if key else {})
    r = await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=keyed)
    assert r.status_code == 200, r.text
    here = r.json()["location"]
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/arrive", json={"location": here}, headers=worker
    )
    assert r.status_code == 200, r.text
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/resolve", json={"note": "清理完毕"}, headers=worker
    )
    assert r.status_code == 200, r.text
    return str(task["worker_id"])


async def feedback(
    h: Harness, resident: str, report_id: str, *, satisfied: bool, comment: str | None = None
) -> None:
    body = {"satisfied": satisfied, "score": 5 if satisfied else 2, "comment": comment}
    r = await h.client.post(
        f"/v1/reports/{report_id}/feedback", json=body, headers=h.auth("resident", resident)
    )
    assert r.status_code == 200, r.text


async def everything(h: Harness) -> str:
    """Every row of every table, as text: to search for what must be gone."""
    out = []
    async with h.runtime.db.reader() as s:
        for table in Base.metadata.sorted_tables:
            for row in await s.execute(select(table)):
                out.append(json.dumps(list(row), default=str, ensure_ascii=False))
    return "\n".join(out)


async def audit_problems(h: Harness) -> list[tuple[str, int | None, str]]:
    async with h.runtime.db.reader() as s:
        result = await verify(s, h.settings.audit_key())
    return sorted((p.case_id, p.seq, p.kind) for p in result.problems)


async def stats(h: Harness) -> dict[str, Any]:
    """The figures by grid over the ManualClock's first year."""
    r = await h.client.get(
        "/v1/stats",
        params={"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z", "by": "grid"},
        headers=h.auth("operator", "ops"),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


PHOTO = png_bytes((40, 30))
