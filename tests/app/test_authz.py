"""Who may do what: each surface refuses the wrong principal with 401 or 403."""

import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.harness import Harness


async def offered(h: Harness) -> tuple[dict[str, str], str, str]:
    report = await h.report("alice")
    case_id = await h.case_of(report["id"])
    task = await h.offered_task(case_id)
    return report, task["id"], task["worker_id"]


async def test_worker_cannot_read_or_act_on_another_workers_task(h: Harness) -> None:
    _, task_id, owner = await offered(h)
    other = "w-33010600100101-1" if owner != "w-33010600100101-1" else "w-33010600100102-1"
    stranger = h.auth("worker", other)
    r = await h.client.get(f"/v1/tasks/{task_id}", headers=stranger)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    listed = await h.client.get("/v1/tasks", headers=stranger)
    assert task_id not in json.dumps(listed.json())
    for action, body in [
        ("accept", None),
        ("decline", None),
        ("resolve", {"note": "x"}),
        ("arrive", {"location": {"lat": 30.24, "lon": 120.15}}),
    ]:
        r = await h.client.post(f"/v1/tasks/{task_id}/{action}", json=body, headers=stranger)
        assert r.status_code == 403, (action, r.text)
    assert (await h.client.get(f"/v1/tasks/{task_id}", headers=h.auth("worker", owner))).json()[
        "status"
    ] == "offered"


async def test_unknown_worker_id_is_refused(h: Harness) -> None:
    r = await h.client.get("/v1/tasks", headers=h.auth("worker", "w-nobody"))
    assert r.status_code == 403


async def test_resident_cannot_read_another_residents_report(h: Harness) -> None:
    report, _, _ = await offered(h)
    mallory = h.auth("resident", "mallory")
    r = await h.client.get(f"/v1/reports/{report['id']}", headers=mallory)
    assert r.status_code == 403
    r = await h.client.get(f"/v1/reports/{report['id']}/events", headers=mallory)
    assert r.status_code == 403
    r = await h.client.post(
        f"/v1/reports/{report['id']}/feedback",
        json={"satisfied": True, "score": 5},
        headers=mallory,
    )
    assert r.status_code == 403
    owner = await h.client.get(f"/v1/reports/{report['id']}", headers=h.auth("resident", "alice"))
    assert owner.status_code == 200
    ops = await h.client.get(f"/v1/reports/{report['id']}", headers=h.auth("operator", "o"))
    assert ops.status_code == 200
    missing = await h.client.get("/v1/reports/nope", headers=h.auth("resident", "alice"))
    assert missing.status_code == 404 and missing.json()["error"] == "report_not_found"


@pytest.mark.parametrize("role", ["resident", "worker"])
async def test_feed_is_for_operators_only(h: Harness, role: str) -> None:
    with pytest.raises(InvalidStatus) as err:
        async with websockets.connect(await h.feed_url(role, "someone")) as ws:
            await ws.recv()
    assert err.value.response.status_code == 403


async def test_feed_refuses_missing_forged_used_and_expired_tickets(h: Harness) -> None:
    base = h.base_url.replace("http", "ws") + "/v1/feed"
    ticket = await h.ticket("operator", "ops")
    forged = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    token = h.token("operator", "ops")  # a bearer token in the URL is not a credential
    for url in (base, f"{base}?ticket={forged}", f"{base}?token={token}"):
        with pytest.raises(InvalidStatus) as err:
            async with websockets.connect(url) as ws:
                await ws.recv()
        assert err.value.response.status_code == 403
    async with websockets.connect(f"{base}?ticket={ticket}"):
        pass  # good once
    with pytest.raises(InvalidStatus) as err:
        async with websockets.connect(f"{base}?ticket={ticket}"):
            pass
    assert err.value.response.status_code == 403
    late = await h.ticket("operator", "ops")
    h.clock.advance(h.settings.auth.ticket_ttl_s + 1)
    with pytest.raises(InvalidStatus) as err:
        async with websockets.connect(f"{base}?ticket={late}"):
            pass
    assert err.value.response.status_code == 403
    headers = {"Authorization": f"Bearer {token}"}  # a client that can set the header
    async with websockets.connect(base, additional_headers=headers):
        pass


async def test_operations_endpoints_refuse_other_roles(h: Harness) -> None:
    report, _, _ = await offered(h)
    case_id = await h.case_of(report["id"])
    for role in ("resident", "worker"):
        headers = h.auth(role, "w-33010600100101-1")
        assert (await h.client.get("/v1/cases", headers=headers)).status_code == 403
        assert (await h.client.get(f"/v1/cases/{case_id}", headers=headers)).status_code == 403


async def test_role_checks_on_intake_and_tasks(h: Harness) -> None:
    body = {"category": "other", "location": {"lat": 30.2431, "lon": 120.1532}}
    r = await h.client.post("/v1/reports", json=body, headers=h.auth("worker", "w"))
    assert r.status_code == 403
    r = await h.client.get("/v1/tasks", headers=h.auth("resident", "alice"))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/reports"),
        ("GET", "/v1/reports/x"),
        ("GET", "/v1/reports/x/events"),
        ("POST", "/v1/reports/x/feedback"),
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks/x/accept"),
        ("GET", "/v1/cases"),
        ("GET", "/v1/cases/x"),
    ],
)
async def test_no_token_is_401(h: Harness, method: str, path: str) -> None:
    r = await h.client.request(method, path, json={})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_expired_and_foreign_tokens_are_401(h: Harness) -> None:
    from datetime import UTC, datetime, timedelta

    from app.auth.tokens import Role, issue_token

    auth = h.settings.auth
    old = issue_token(
        h.runtime.secret,
        role=Role.OPERATOR,
        subject="o",
        issuer=auth.issuer,
        audience=auth.audience,
        now=datetime.now(UTC) - timedelta(days=2),
        ttl_s=60,
    )
    foreign = issue_token(
        "x" * 40,
        role=Role.OPERATOR,
        subject="o",
        issuer=auth.issuer,
        audience=auth.audience,
        now=datetime.now(UTC),
        ttl_s=60,
    )
    for token in (old, foreign, "not-a-jwt"):
        r = await h.client.get("/v1/cases", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token


async def test_public_reference_data(h: Harness) -> None:
    cats = (await h.client.get("/v1/categories")).json()
    fire = next(c for c in cats if c["code"] == "fire_lane_blocked")
    assert (fire["accept_s"], fire["on_site_s"], fire["close_s"]) == (60, 300, 900)
    assert fire["name_zh"] == "消防通道堵塞"
    garbage = next(c for c in cats if c["code"] == "garbage_overflow")
    assert (garbage["on_site_s"], garbage["close_s"]) == (7200, 86400)
    assert {"street_vending", "illegal_parking", "road_damage", "other"} <= {
        c["code"] for c in cats
    }
    streets = (await h.client.get("/v1/grids", params={"level": "street"})).json()
    assert len(streets["features"]) == 4
    located = await h.client.get("/v1/grids/locate", params={"lat": 30.2431, "lon": 120.1532})
    assert located.status_code == 200 and len(located.json()["code"]) == 14
    outside = await h.client.get("/v1/grids/locate", params={"lat": 39.9, "lon": 116.4})
    assert outside.status_code == 422 and outside.json()["error"] == "outside_service_area"


async def test_unknown_route_is_json_404(h: Harness) -> None:
    r = await h.client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
