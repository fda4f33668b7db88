"""The authorization matrix: every endpoint × every kind of caller, against the real app.

Each row is one endpoint; each column one caller: nobody, the resident who reported, another
resident, the worker offered the task, another worker, an operator, an admin, a signed
sensor, and scoped staff (app/auth/scopes.py): an operator and an admin of the case's street,
an operator and an admin of the street next to it, and an operator of the case's department
(the road repair is the roads department's). The unscoped operator and admin are the
city-wide columns. A cell is the set of statuses allowed (an allowed caller may still meet a
409 or 422 from the state of the case; it must never see 401/403/404, and a refused caller
must never see anything else). The table must name every route the app has.

Outside its scope a caller meets 404 for one case or report (as if it did not exist) and 403
for a photo (as every caller with no part in it) or a worker; lists, figures and the feed
answer it with its own area only (tests/app/test_scopes.py checks what they hold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import websockets
from fastapi.routing import APIRoute, APIWebSocketRoute
from websockets.exceptions import InvalidStatus

from app.http.app import ROUTERS
from tests.app.test_alerts import alert
from tests.harness import CITY_POINT, Harness, png_bytes

SCOPED = ["own_operator", "next_operator", "own_admin", "next_admin", "dept_operator"]
CALLERS = [
    "anon",
    "owner",
    "resident",
    "worker",
    "other_worker",
    "operator",
    "admin",
    "sensor",
    *SCOPED,
]
INSIDE = ("operator", "admin", "own_operator", "own_admin", "dept_operator")
OUTSIDE = ("next_operator", "next_admin")
OK_READ = {200}
ACTED = {200, 409, 422}  # allowed: the answer depends on the task's state
DENY = {403}
NOAUTH = {401}
HIDDEN = {404}  # outside the caller's scope: as if it did not exist


def row(**cells: set[int]) -> dict[str, set[int]]:
    """A row: callers not named are refused (401 without a token, 403 with the wrong one)."""
    out = {c: (NOAUTH if c in ("anon", "sensor") else DENY) for c in CALLERS}
    out.update(cells)
    return out


def staff(inside: set[int], outside: set[int], **cells: set[int]) -> dict[str, set[int]]:
    """A row for operators and admins: `inside` for the city-wide ones and those whose scope
    holds the case, `outside` for the neighbouring street's."""
    return row(**dict.fromkeys(INSIDE, inside), **dict.fromkeys(OUTSIDE, outside), **cells)


PUBLIC = dict.fromkeys(CALLERS, OK_READ)
WORKER_ACTION = row(worker=ACTED)
EVERY_TOKEN = [c for c in CALLERS if c not in ("anon", "sensor")]

MATRIX: dict[tuple[str, str], dict[str, set[int]]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # Scrapers carry no token; the answer holds counts and timings only (tests/app/test_metrics.py).
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/categories"): PUBLIC,
    ("GET", "/v1/grids"): PUBLIC,
    ("GET", "/v1/grids/locate"): PUBLIC,
    ("POST", "/v1/reports"): row(owner={201}, resident={201}),
    ("GET", "/v1/reports/{report_id}"): staff(OK_READ, HIDDEN, owner=OK_READ),
    ("GET", "/v1/reports/{report_id}/events"): staff(OK_READ, HIDDEN, owner=OK_READ),
    ("POST", "/v1/reports/{report_id}/feedback"): row(owner={409}),  # not resolved yet
    # Bearer tokens are not credentials here: only a device signature is.
    ("POST", "/v1/alerts"): dict.fromkeys(CALLERS, NOAUTH) | {"sensor": {202}},
    ("GET", "/v1/tasks"): row(worker=OK_READ, other_worker=OK_READ),  # each sees their own
    ("GET", "/v1/tasks/{task_id}"): row(worker=OK_READ),
    ("POST", "/v1/tasks/{task_id}/accept"): WORKER_ACTION,
    ("POST", "/v1/tasks/{task_id}/decline"): WORKER_ACTION,
    ("POST", "/v1/tasks/{task_id}/arrive"): WORKER_ACTION,
    ("POST", "/v1/tasks/{task_id}/resolve"): WORKER_ACTION,
    ("POST", "/v1/tasks/{task_id}/return"): WORKER_ACTION,
    ("GET", "/v1/workers/me/status"): row(worker=OK_READ, other_worker=OK_READ),  # their own
    ("PUT", "/v1/workers/me/status"): row(worker=OK_READ, other_worker=OK_READ),
    # Lists and figures answer every operator, each with its own scope's cases only.
    ("GET", "/v1/cases"): staff(OK_READ, OK_READ),
    ("GET", "/v1/cases/{case_id}"): staff(OK_READ, HIDDEN),
    # The operator stops the clocks; the admin then meets a stopped clock (409), and so on.
    ("POST", "/v1/cases/{case_id}/pause"): staff({200, 409}, HIDDEN),
    ("POST", "/v1/cases/{case_id}/resume"): staff({200, 409}, HIDDEN),
    # Inspectors are workers with the inspect skill: neither of these workers has it. The
    # worker has resolved the road repair by then: the operator passes it, the admin meets 409.
    ("POST", "/v1/cases/{case_id}/verify"): staff({200, 409}, HIDDEN),
    ("GET", "/v1/workers/me/verifications"): row(),
    ("GET", "/v1/stats"): staff(OK_READ, OK_READ),
    # The whole city's: admins without a scope only.
    ("GET", "/v1/admin/policies"): row(admin=OK_READ),
    ("PUT", "/v1/admin/policies"): row(admin={422}),  # no policy for any category: refused
    ("PUT", "/v1/admin/grids"): row(admin={422}),  # an empty set: refused after the check
    # Each admin lists its scope's workers; the new worker is in the case's street.
    ("GET", "/v1/admin/workers"): row(admin=OK_READ, own_admin=OK_READ, next_admin=OK_READ),
    ("PUT", "/v1/admin/workers/{worker_id}"): row(admin=OK_READ, own_admin=OK_READ),
    ("GET", "/v1/photos/{photo_id}"): staff(OK_READ, DENY, owner=OK_READ, worker=OK_READ),
    # Every operator's feed opens; what it carries is its scope's (tests/app/test_scopes.py).
    ("WS", "/v1/feed"): staff({101}, {101}, anon=DENY, sensor=DENY),
    # Any bearer token: a stream ticket, a renewed token, for its own holder
    ("POST", "/v1/tickets"): row(**dict.fromkeys(EVERY_TOKEN, OK_READ)),
    ("POST", "/v1/token/refresh"): row(**dict.fromkeys(EVERY_TOKEN, OK_READ)),
    # Staff reads of residents' personal data, the whole city's: admins without a scope only
    ("GET", "/v1/admin/access-log"): row(admin=OK_READ),
    # A resident's own data, whoever it is (another resident gets their own: nothing)
    ("GET", "/v1/me/data"): row(owner=OK_READ, resident=OK_READ),
    # Last: the owner's erasure leaves the report theirs no more
    ("POST", "/v1/me/erase"): row(owner=OK_READ, resident=OK_READ),
}


@dataclass
class World:
    report_id: str
    case_id: str
    task_id: str
    photo_id: str
    worker: str
    other_worker: str
    street: str  # the case's street
    next_street: str  # the street beside it


async def world(h: Harness) -> World:
    body = {"category": "road_damage", "description": "路面坑洞", "location": CITY_POINT}
    files = [
        ("report", (None, json.dumps(body), "application/json")),
        ("photos", ("p.png", png_bytes(), "image/png")),
    ]
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "owner"))
    assert r.status_code == 201
    report_id = r.json()["id"]
    case_id = await h.case_of(report_id)
    task = await h.offered_task(case_id)
    got = await h.client.get(f"/v1/reports/{report_id}", headers=h.auth("resident", "owner"))
    photo_id = got.json()["photo_urls"][0].rsplit("/", 1)[1]
    other = "w-33010600100101-1"
    if other == task["worker_id"]:
        other = "w-33010600100102-1"
    case = await h.case(case_id)
    assert case["department"] == "roads"
    street = case["grid"][:9]
    next_street = "330106002" if street != "330106002" else "330106001"
    return World(
        report_id, case_id, task["id"], photo_id, task["worker_id"], other, street, next_street
    )


def token_for(h: Harness, w: World, caller: str) -> str | None:
    """The caller's bearer token (None: it has none)."""
    who: dict[str, tuple[str, str, str | None]] = {
        "owner": ("resident", "owner", None),
        "resident": ("resident", "someone-else", None),
        "worker": ("worker", w.worker, None),
        "other_worker": ("worker", w.other_worker, None),
        "operator": ("operator", "ops-1", None),
        "admin": ("admin", "root", None),
        "own_operator": ("operator", "ops-street", f"street:{w.street}"),
        "next_operator": ("operator", "ops-next", f"street:{w.next_street}"),
        "own_admin": ("admin", "admin-street", f"street:{w.street}"),
        "next_admin": ("admin", "admin-next", f"street:{w.next_street}"),
        "dept_operator": ("operator", "ops-roads", "department:roads"),
    }
    if caller not in who:
        return None
    return h.token(*who[caller])


def headers_for(h: Harness, w: World, caller: str) -> dict[str, str]:
    token = token_for(h, w, caller)
    return {} if token is None else {"Authorization": f"Bearer {token}"}


BODIES: dict[str, Any] = {
    "/v1/reports": {"category": "other", "location": CITY_POINT},
    "/v1/reports/{report_id}/feedback": {"satisfied": True, "score": 5},
    "/v1/tasks/{task_id}/arrive": {"location": CITY_POINT},
    "/v1/tasks/{task_id}/resolve": {"note": "done"},
    "/v1/tasks/{task_id}/return": {"reason": "不属于本网格"},
    "/v1/admin/grids": {"type": "FeatureCollection", "features": []},
    "/v1/workers/me/status": {"on_duty": True},
    "/v1/cases/{case_id}/pause": {"kind": "waiting_for_resident", "reason": "等居民开门"},
    "/v1/cases/{case_id}/verify": {"passed": True, "note": "已修复", "location": CITY_POINT},
    "/v1/admin/policies": {"policies": []},
    "/v1/admin/workers/{worker_id}": {"name": "新网格员", "grid": "33010600100101"},
}
PARAMS: dict[str, dict[str, Any]] = {"/v1/grids/locate": CITY_POINT}


async def call(h: Harness, w: World, caller: str, method: str, template: str) -> int:
    path = template.format(
        report_id=w.report_id,
        case_id=w.case_id,
        task_id=w.task_id,
        photo_id=w.photo_id,
        worker_id="w-new-1",
    )
    if method == "WS":
        token = token_for(h, w, caller)
        ticket = ""
        if token is not None:
            r = await h.client.post("/v1/tickets", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            ticket = r.json()["ticket"]
        url = h.base_url.replace("http", "ws") + f"{path}?ticket={ticket}"
        try:
            async with websockets.connect(url, open_timeout=5):
                return 101  # the handshake was accepted
        except InvalidStatus as refused:  # refused before the handshake completed
            return refused.response.status_code
    if caller == "sensor":
        raw, headers = h.signed(alert(f"m-{method}-{template}"), path=path)
        r = await h.client.request(
            method, path, content=raw, params=PARAMS.get(template), headers=headers
        )
        return r.status_code
    headers = headers_for(h, w, caller)
    body = BODIES.get(template)
    if template.endswith("/events"):
        async with h.client.stream("GET", path, headers=headers) as r:
            return r.status_code
    r = await h.client.request(
        method, path, json=body, params=PARAMS.get(template), headers=headers
    )
    return r.status_code


def test_the_matrix_covers_every_route() -> None:
    routes = set()
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                routes |= {(m, route.path) for m in route.methods if m != "HEAD"}
            elif isinstance(route, APIWebSocketRoute):
                routes.add(("WS", route.path))
    assert len(routes) > 20
    assert routes == set(MATRIX), "every endpoint needs its row in MATRIX"


async def test_every_endpoint_for_every_caller(h: Harness) -> None:
    w = await world(h)
    wrong: list[str] = []
    # Refusals first, then the allowed calls (some of which change the task's state).
    cells = sorted(
        ((route, caller) for route in MATRIX for caller in CALLERS),
        key=lambda rc: MATRIX[rc[0]][rc[1]] not in (NOAUTH, DENY, HIDDEN),
    )
    for (method, template), caller in cells:
        allowed = MATRIX[(method, template)][caller]
        got = await call(h, w, caller, method, template)
        if got not in allowed:
            wrong.append(f"{method} {template} as {caller}: {got}, expected {sorted(allowed)}")
    assert not wrong, "\n".join(wrong)
