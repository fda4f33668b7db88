"""Idempotency-Key: a retry gets the first answer and never makes a second row."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.app.test_alerts import alert
from tests.harness import CITY_POINT, Harness, png_bytes


async def intake(h: Harness) -> dict[str, int]:
    """The rows a request writes itself (the dispatcher works on in the background)."""
    counts = await h.counts()
    return {t: counts[t] for t in ("reports", "photos", "idempotency_keys")}


REPORT = {"category": "garbage_overflow", "description": "垃圾桶满了", "location": CITY_POINT}


async def post_report(
    h: Harness, key: str | None, body: dict[str, Any] = REPORT, resident: str = "alice"
) -> Any:
    headers = h.auth("resident", resident) | ({"Idempotency-Key": key} if key else {})
    return await h.client.post("/v1/reports", json=body, headers=headers)


async def test_a_retried_report_is_stored_once(h: Harness) -> None:
    before = await h.counts()
    first = await post_report(h, "4b1d6c1e-retry")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    after_first = await h.counts()
    again = await post_report(h, "4b1d6c1e-retry")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert after_first["reports"] == before["reports"] + 1
    now = await h.counts()
    assert now["reports"] == after_first["reports"]
    assert now["idempotency_keys"] == before["idempotency_keys"] + 1


async def test_the_same_key_for_another_request_is_refused(h: Harness) -> None:
    assert (await post_report(h, "k-1")).status_code == 201
    before = await intake(h)
    other = await post_report(h, "k-1", REPORT | {"description": "另一件事"})
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    assert await intake(h) == before


async def test_keys_belong_to_their_principal(h: Harness) -> None:
    a = await post_report(h, "shared-key", resident="alice")
    b = await post_report(h, "shared-key", resident="bob")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_a_multipart_retry_matches_on_content_not_bytes(h: Harness) -> None:
    def files() -> list[Any]:
        return [
            ("report", (None, json.dumps(REPORT), "application/json")),
            ("photos", ("a.png", png_bytes(), "image/png")),
        ]

    headers = h.auth("resident", "carol") | {"Idempotency-Key": "photo-1"}
    first = await h.client.post("/v1/reports", files=files(), headers=headers)
    again = await h.client.post("/v1/reports", files=files(), headers=headers)  # new boundary
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    other = [("report", (None, json.dumps(REPORT), "application/json"))]  # the photo left out
    assert (await h.client.post("/v1/reports", files=other, headers=headers)).status_code == 422


async def test_copies_arriving_together_make_one_report(h: Harness) -> None:
    before = await h.counts()
    answers = await asyncio.gather(*(post_report(h, "burst-1") for _ in range(6)))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert (await h.counts())["reports"] == before["reports"] + 1


async def test_a_retried_alert_is_stored_once(h: Harness) -> None:
    body = alert("evt-42")
    first = await h.alert(body, **{"Idempotency-Key": "evt-42"})
    before = await intake(h)
    h.clock.advance(1)  # the device signs its retry afresh
    again = await h.alert(body, **{"Idempotency-Key": "evt-42"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await intake(h) == before


async def test_a_retried_worker_action_answers_as_the_first(h: Harness) -> None:
    report = (await post_report(h, None)).json()
    case_id = await h.case_of(report["id"])
    task = await h.offered_task(case_id)
    headers = h.auth("worker", task["worker_id"]) | {"Idempotency-Key": "accept-1"}
    url = f"/v1/tasks/{task['id']}/accept"
    first = await h.client.post(url, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    again = await h.client.post(url, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    # Without the key, accepting twice is a conflict, as before.
    plain = await h.client.post(url, headers=h.auth("worker", task["worker_id"]))
    assert plain.status_code == 409


@pytest.mark.parametrize("bad", ["", "x" * 201, "has space", "ключ".encode()])
async def test_malformed_keys_are_refused(h: Harness, bad: str | bytes) -> None:
    before = await intake(h)
    headers: dict[str, Any] = h.auth("resident", "alice") | {"Idempotency-Key": bad}
    r = await h.client.post("/v1/reports", json=REPORT, headers=headers)
    assert r.status_code == 422, r.text
    assert await intake(h) == before
