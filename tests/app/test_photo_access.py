"""Photos are served only to those allowed to see them; workers never see who reported."""

from __future__ import annotations

import json

from sqlalchemy import select

from app.models import Photo
from tests.app.test_photos import tagged_photo
from tests.harness import CITY_POINT, Harness, png_bytes


async def test_photos_reach_only_those_with_a_part_in_the_case(h: Harness) -> None:
    body = {"category": "road_damage", "description": "路面塌陷", "location": CITY_POINT}
    files = [
        ("report", (None, json.dumps(body), "application/json")),
        ("photos", ("pothole.jpg", tagged_photo("JPEG"), "image/jpeg")),
    ]
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "ann"))
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    mine = (
        await h.client.get(f"/v1/reports/{report_id}", headers=h.auth("resident", "ann"))
    ).json()
    (url,) = mine["photo_urls"]
    case_id = await h.case_of(report_id)
    task = await h.offered_task(case_id)
    worker = task["worker_id"]

    async def status(headers: dict[str, str]) -> int:
        return (await h.client.get(url, headers=headers)).status_code

    own = await h.client.get(url, headers=h.auth("resident", "ann"))
    assert own.status_code == 200 and own.headers["content-type"] == "image/jpeg"
    assert b"PhoneMaker" not in own.content and own.content[:2] == b"\xff\xd8"
    assert own.headers["cache-control"].startswith("private")
    assert await status(h.auth("operator", "ops")) == 200
    assert await status(h.auth("admin", "root")) == 200
    assert await status(h.auth("worker", worker)) == 200  # offered the task
    assert await status(h.auth("resident", "ben")) == 403
    assert await status(h.auth("worker", "w-nobody")) == 403
    assert await status({}) == 401
    missing = await h.client.get("/v1/photos/no-such-photo", headers=h.auth("operator", "ops"))
    assert missing.status_code == 404 and missing.json()["error"] == "photo_not_found"

    # The worker's task shows the photo, the place and the problem, never the resident.
    seen = await h.client.get(f"/v1/tasks/{task['id']}", headers=h.auth("worker", worker))
    assert seen.json()["photo_urls"] == [url]
    assert "ann" not in seen.text

    # The resolution photo is seen by the resident whose report it answers.
    await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=h.auth("worker", worker))
    await h.client.post(
        f"/v1/tasks/{task['id']}/arrive",
        json={"location": CITY_POINT},
        headers=h.auth("worker", worker),
    )
    done = [
        ("resolution", (None, json.dumps({"note": "已修复"}), "application/json")),
        ("photos", ("fixed.png", png_bytes(), "image/png")),
    ]
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/resolve", files=done, headers=h.auth("worker", worker)
    )
    assert r.status_code == 200, r.text
    async with h.runtime.db.reader() as s:
        fixed = await s.scalar(select(Photo.id).where(Photo.task_id == task["id"]))
    assert fixed is not None
    fixed_url = f"/v1/photos/{fixed}"
    assert (await h.client.get(fixed_url, headers=h.auth("resident", "ann"))).status_code == 200
    assert (await h.client.get(fixed_url, headers=h.auth("resident", "ben"))).status_code == 403
