from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from app.models import Case, Device, Report
from tests.harness import Harness

CAM = {"lat": 30.2431, "lon": 120.1532}


def alert(external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "category": "fire_lane_blocked",
        "location": CAM,
        "observed_at": datetime.now(UTC).isoformat(),
        "confidence": 0.93,
        **extra,
    }


async def test_five_alerts_from_one_camera_make_one_case(h: Harness) -> None:
    answers = []
    for n in range(5):
        r = await h.alert(alert(f"evt-{n}"))
        assert r.status_code == 202, r.text
        answers.append(r.json())
    assert len({a["id"] for a in answers}) == 5
    case_id = await h.case_of(answers[0]["id"])
    for a in answers:
        assert await h.case_of(a["id"]) == case_id
    case = await h.case(case_id)
    assert sorted(case["report_ids"]) == sorted(a["id"] for a in answers)
    types = [e["type"] for e in case["timeline"]]
    assert types.count("CaseOpened") == 1 and types.count("ReportMerged") == 4
    # Once the case exists, later alerts are told which case they joined.
    r = await h.alert(alert("evt-late"))
    assert r.json()["case_id"] == case_id


async def test_repeated_external_id_is_not_stored_twice(h: Harness) -> None:
    body = alert("same-1", location={"lat": 30.2488, "lon": 120.2071})
    first = await h.alert(body, "cam-002")
    h.clock.advance(1)  # a new signature: the same signed bytes again would be a replay
    again = await h.alert(body, "cam-002")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"] is True
    async with h.runtime.db.reader() as s:
        n = await s.scalar(
            select(func.count()).select_from(Report).where(Report.external_id == "same-1")
        )
    assert n == 1


async def test_device_key_is_required_and_checked(h: Harness) -> None:
    before = await h.counts()
    r = await h.client.post("/v1/alerts", json=alert("x"))
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(
            update(Device).where(Device.id == "cam-003").values(revoked_at=datetime.now(UTC))
        )
    r = await h.alert(alert("x"), "cam-003")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert await h.counts() == before


async def test_bad_alerts_leave_nothing(h: Harness) -> None:
    before = await h.counts()
    for body, error in [
        (alert("a", location={"lat": 39.9, "lon": 116.4}), "outside_service_area"),
        (alert("b", category="nope"), "unknown_category"),
        (alert("c", confidence=1.5), "validation_error"),
        ({k: v for k, v in alert("d").items() if k != "observed_at"}, "validation_error"),
    ]:
        r = await h.alert(body)
        assert r.status_code == 422 and r.json()["error"] == error, r.text
    assert await h.counts() == before


async def test_a_repeated_alert_joins_a_case_waiting_for_its_inspector(h: Harness) -> None:
    """Regression: "open" once lacked `verifying`, so a camera that kept seeing the blocked
    lane while the inspector was on the way opened a second case."""
    from tests.dispatch.test_departments import work
    from tests.dispatch.test_escalation import policies, policy, put_policies

    doc = await policies(h)
    policy(doc, "fire_lane_blocked").update(verify_s=3600)
    assert (await put_policies(h, doc)).status_code == 200
    first = await h.alert(alert("seen-1"))
    case_id = await h.case_of(first.json()["id"])
    await work(h, case_id, (await h.case(case_id))["location"])
    assert (await h.case(case_id))["status"] == "verifying"

    again = await h.alert(alert("seen-2"))
    assert again.status_code == 202 and again.json()["case_id"] == case_id
    assert await h.case_of(again.json()["id"]) == case_id
    types = [e["type"] for e in (await h.case(case_id))["timeline"]]
    assert types.count("CaseOpened") == 1 and types[-1] == "ReportMerged"
    async with h.runtime.db.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Case)) == 1
