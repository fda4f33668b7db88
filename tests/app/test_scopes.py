"""Authority by level (分级分权): scoped operators and admins reach their own area or queue only.

Three cases: A in one street just beside its boundary, B just across it in the next street
(its unit grid touches A's), and C, a road repair (the roads department's queue) in B's street.
Scopes: the street of A, the street of B, the roads department, and no scope (the city).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import websockets
from sqlalchemy import select
from websockets.exceptions import InvalidStatus

from app.auth.scopes import InvalidScope, OutsideScope, Scope, ScopeKind, parse_scope
from app.auth.tickets import issue_ticket, read_ticket
from app.auth.tokens import Principal, Role, TokenVerifier, issue_token
from app.cases.events import envelope_of
from app.models import Case, CaseEvent, Worker
from app.platform.errors import Unauthorized
from app.platform.feed import EVENT_COLUMNS, FeedFilter, replay
from geo import Grid
from tests.harness import Harness

SECRET = "s" * 40
PAUSE = {"kind": "waiting_for_resident", "reason": "等居民开门"}


# --- the scope itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "code"),
    [
        ("district:330106", ScopeKind.DISTRICT, "330106"),
        ("street:330106001", ScopeKind.STREET, "330106001"),
        ("community:330106001001", ScopeKind.COMMUNITY, "330106001001"),
        ("department:roads", ScopeKind.DEPARTMENT, "roads"),
    ],
)
def test_scopes_are_read(text: str, kind: ScopeKind, code: str) -> None:
    scope = parse_scope(text)
    assert (scope.kind, scope.code, str(scope)) == (kind, code, text)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("town:330106", "unknown scope kind 'town'"),
        ("330106001", "not kind:code"),
        ("street:33010600", "9 digits"),
        ("district:33010A", "6 digits"),
        ("community:330106001001001", "12 digits"),
        ("street:３３０１０６００１", "9 digits"),  # full-width digits are not a code
        ("department:Roads", "department code"),
        ("department:", "department code"),
        ("department:roads\n", "department code"),  # `$` would let the newline through
        (["street:330106001"], "a string"),
        ("", "not kind:code"),
    ],
)
def test_malformed_scopes_are_refused(value: Any, says: str) -> None:
    with pytest.raises(InvalidScope, match=says):
        parse_scope(value)


def test_what_a_scope_covers() -> None:
    street = Scope(ScopeKind.STREET, "330106001")
    assert street.covers("33010600100101", None)
    assert street.covers("33010600100101", "roads")  # a department's case on the street's ground
    assert not street.covers("33010600200101", None)  # across the boundary: the neighbour's
    assert street.covers_worker("33010600100101", None)
    assert not street.covers_worker("33010600100101", "roads")  # the department's crew
    roads = Scope(ScopeKind.DEPARTMENT, "roads")
    assert roads.covers("33010600200101", "roads") and not roads.covers("33010600100101", None)
    assert roads.covers_worker("33010600400101", "roads")
    street.check_area("330106")  # wider: narrowed by the query, not refused
    street.check_area("3301060010")
    with pytest.raises(OutsideScope):
        street.check_area("330106002")
    with pytest.raises(OutsideScope):
        roads.check_case_filters(grid=None, department="parks")
    with pytest.raises(OutsideScope):
        street.check_worker_filters(grid=None, department="roads")


# --- tokens, tickets, the command line ----------------------------------------------------


def _token(role: Role, scope: Scope | None) -> str:
    return issue_token(
        SECRET,
        role=role,
        subject="x",
        issuer="gridflow",
        audience="gridflow",
        now=datetime.now(UTC),
        ttl_s=60,
        scope=scope,
    )


def test_tokens_and_tickets_carry_the_scope() -> None:
    verifier = TokenVerifier(SECRET, issuer="gridflow", audience="gridflow")
    street = parse_scope("street:330106001")
    who = verifier.verify(_token(Role.OPERATOR, street))
    assert who == Principal(Role.OPERATOR, "x", street)
    assert verifier.verify(_token(Role.ADMIN, None)).scope is None
    ticket = issue_ticket(SECRET, who, now=datetime.now(UTC), ttl_s=30)
    assert read_ticket(SECRET, ticket, now=datetime.now(UTC)).principal == who
    with pytest.raises(ValueError, match="only operator and admin"):
        _token(Role.WORKER, street)


def test_a_token_with_a_malformed_scope_is_refused() -> None:
    verifier = TokenVerifier(SECRET, issuer="gridflow", audience="gridflow")
    claims = {"sub": "x", "role": "admin", "iss": "gridflow", "aud": "gridflow"}
    for bad in ("town:1", "", 330106, ["district:330106"]):
        forged = jwt.encode(claims | {"exp": 4102444800, "gridflow_scope": bad}, SECRET)
        with pytest.raises(Unauthorized, match="token scope is invalid"):
            verifier.verify(forged)
    # null is no scope at all, as an absent claim
    plain = jwt.encode(claims | {"exp": 4102444800, "gridflow_scope": None}, SECRET)
    assert verifier.verify(plain).scope is None


async def test_refresh_and_tickets_keep_the_scope(h: Harness) -> None:
    scoped = h.auth("operator", "ops-s", "street:330106001")
    r = await h.client.post("/v1/token/refresh", headers=scoped)
    assert r.status_code == 200, r.text
    assert h.runtime.tokens.verify(r.json()["access_token"]).scope == parse_scope(
        "street:330106001"
    )
    ticket = await h.ticket("operator", "ops-s", "street:330106001")
    assert read_ticket(h.runtime.secret, ticket, now=h.clock.now()).principal.scope is not None
    forged = jwt.encode(
        {"sub": "x", "role": "operator", "iss": "gridflow", "aud": "gridflow"}
        | {"exp": 4102444800, "gridflow_scope": "city:all"},
        h.runtime.secret,
    )
    r = await h.client.get("/v1/cases", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert "token scope is invalid" in r.json()["detail"]


# --- the areas ------------------------------------------------------------------------------


@dataclass
class Area:
    a: str  # case ids
    b: str
    c: str
    grid_a: str
    grid_b: str
    street_a: str
    street_b: str
    report_b: str


def boundary(h: Harness) -> tuple[Grid, Grid, float, float]:
    """Two unit grids that touch across the boundary of two streets, walking east from a
    point of the demo city; the longitude just west of the boundary, and its latitude."""
    index = h.runtime.grids.require()
    lat, lon, step = 30.2431, 120.15, 0.0001
    first = index.locate(lon, lat)
    assert first is not None
    while True:
        here = index.locate(lon + step, lat)
        assert here is not None
        if here.code[:9] != first.code[:9]:
            break
        lon += step
    west, east = index.locate(lon - step, lat), index.locate(lon + 2 * step, lat)
    assert west is not None and east is not None
    assert east.code in index.neighbours(west.code)  # just across the boundary: they touch
    return west, east, lon, lat


async def areas(h: Harness) -> Area:
    """A, B and C as the module's docstring says, each offered to a worker (10 to 30 m from
    the boundary)."""
    west, east, lon, lat = boundary(h)
    step = 0.0001
    a = await h.report("ra", "garbage_overflow", point={"lat": lat, "lon": lon - step})
    b = await h.report("rb", "garbage_overflow", point={"lat": lat, "lon": lon + 2 * step})
    c = await h.report("rc", "road_damage", point={"lat": lat + 0.0003, "lon": lon + 2 * step})
    ids = [await h.case_of(r["id"]) for r in (a, b, c)]
    for case_id in ids:
        await h.offered_task(case_id)
    found = [await h.case(case_id) for case_id in ids]
    assert [x["grid"] for x in found[:2]] == [west.code, east.code]
    assert found[2]["grid"][:9] == east.code[:9] and found[2]["department"] == "roads"
    return Area(*ids, west.code, east.code, west.code[:9], east.code[:9], b["id"])


def op(h: Harness, scope: str | None) -> dict[str, str]:
    return h.auth("operator", f"ops-{scope}", scope)


async def listed(h: Harness, scope: str | None, **params: str) -> set[str]:
    r = await h.client.get("/v1/cases", params=params, headers=op(h, scope))
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["items"]}


async def test_lists_and_single_cases_stay_in_the_scope(h: Harness) -> None:
    w = await areas(h)
    s_a, s_b, roads = f"street:{w.street_a}", f"street:{w.street_b}", "department:roads"
    assert await listed(h, s_a) == {w.a}
    assert await listed(h, s_b) == {w.b, w.c}
    assert await listed(h, roads) == {w.c}
    assert await listed(h, None) == {w.a, w.b, w.c}
    assert await listed(h, f"community:{w.grid_b[:12]}") == {w.b, w.c} & await listed(
        h, None, grid=w.grid_b[:12]
    )
    # filters narrow; a wider one is cut to the scope; one outside it is refused
    assert await listed(h, s_a, grid="330106") == {w.a}
    assert await listed(h, s_b, department="roads") == {w.c}
    assert await listed(h, roads, grid=w.street_b) == {w.c}
    for scope, params in ((s_a, {"grid": w.street_b}), (roads, {"department": "sanitation"})):
        r = await h.client.get("/v1/cases", params=params, headers=op(h, scope))
        assert (r.status_code, r.json()["error"]) == (403, "outside_scope"), r.text

    # one case outside the scope: as if it did not exist, and nothing is written
    before = await h.counts()
    nowhere = str(uuid.uuid4())
    for case_id in (w.b, nowhere):
        r = await h.client.get(f"/v1/cases/{case_id}", headers=op(h, s_a))
        assert (r.status_code, r.json()["error"]) == (404, "case_not_found")
        for action, body in (
            ("pause", PAUSE),
            ("resume", None),
            ("verify", {"passed": True, "note": "已修复"}),
        ):
            r = await h.client.post(f"/v1/cases/{case_id}/{action}", json=body, headers=op(h, s_a))
            assert (r.status_code, r.json()["error"]) == (404, "case_not_found"), action
    r = await h.client.get(f"/v1/reports/{w.report_b}", headers=op(h, s_a))
    assert (r.status_code, r.json()["error"]) == (404, "report_not_found")
    async with h.client.stream("GET", f"/v1/reports/{w.report_b}/events", headers=op(h, s_a)) as r:
        assert r.status_code == 404
    assert await h.counts() == before
    # inside: allowed
    r = await h.client.post(f"/v1/cases/{w.b}/pause", json=PAUSE, headers=op(h, s_b))
    assert r.status_code == 200, r.text
    r = await h.client.post(f"/v1/cases/{w.c}/resume", headers=op(h, roads))
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")  # not paused


async def test_stats_count_only_the_scope(h: Harness) -> None:
    w = await areas(h)

    now = h.clock.now()
    window = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
    }

    async def stats(scope: str | None, **params: str) -> dict[str, Any]:
        r = await h.client.get("/v1/stats", params=window | params, headers=op(h, scope))
        assert r.status_code == 200, r.text
        return dict(r.json())

    s_a, s_b = f"street:{w.street_a}", f"street:{w.street_b}"
    assert (await stats(None))["total"]["received"] == 3
    mine = await stats(s_a, by="street")
    assert mine["total"]["received"] == 1
    assert [(g["key"], g["received"]) for g in mine["groups"]] == [(w.street_a, 1)]
    theirs = await stats(s_b, by="department")
    assert {g["key"]: g["received"] for g in theirs["groups"]} == {None: 1, "roads": 1}
    assert (await stats("department:roads"))["total"]["received"] == 1
    assert (await stats(None, grid=w.street_b))["total"]["received"] == 2
    assert (await stats(s_b, grid="330106"))["total"]["received"] == 2
    r = await h.client.get("/v1/stats", params=window | {"grid": w.street_b}, headers=op(h, s_a))
    assert (r.status_code, r.json()["error"]) == (403, "outside_scope")
    r = await h.client.get("/v1/stats", params=window | {"format": "csv"}, headers=op(h, s_a))
    assert r.text.splitlines()[-1].split(",")[:2] == ["(total)", "1"]


async def read_until(url: str, cursor: int) -> list[dict[str, Any]]:
    """Feed events up to and including `cursor` (heartbeats skipped), bounded in time."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(20), websockets.connect(url, open_timeout=5) as ws:
        while not out or out[-1]["cursor"] < cursor:
            event = json.loads(await ws.recv())
            if event["type"] != "heartbeat":
                out.append(event)
    return out


async def test_feed_carries_only_the_scope(h: Harness) -> None:
    # Scoped screens watching live before anything happens.
    west, east, _, _ = boundary(h)
    scopes = {"a": f"street:{west.code[:9]}", "b": f"street:{east.code[:9]}"}
    scopes["roads"] = "department:roads"
    live: dict[str, list[dict[str, Any]]] = {k: [] for k in scopes}
    until: dict[str, int] = {}
    ready = asyncio.Event()
    known = asyncio.Event()

    async def watch(name: str, url: str) -> None:
        async with asyncio.timeout(30), websockets.connect(url, open_timeout=5) as ws:
            ready.set()
            await known.wait()
            while not live[name] or live[name][-1]["cursor"] < until[name]:
                event = json.loads(await ws.recv())
                if event["type"] != "heartbeat":
                    live[name].append(event)

    watchers = []
    for name, scope in scopes.items():
        watchers.append(asyncio.create_task(watch(name, await h.feed_url("operator", name, scope))))
        await asyncio.wait_for(ready.wait(), 10)
        ready.clear()
    await h.eventually(lambda: _subscribers(h, 3), what="three live screens")

    w = await areas(h)
    assert scopes["a"] == f"street:{w.street_a}" and scopes["b"] == f"street:{w.street_b}"
    city = op(h, None)

    async def act(case_id: str, action: str) -> None:
        body = PAUSE if action == "pause" else None
        r = await h.client.post(f"/v1/cases/{case_id}/{action}", json=body, headers=city)
        assert r.status_code == 200, r.text

    for case_id, action in (
        (w.a, "pause"),
        (w.b, "pause"),
        (w.c, "pause"),
        (w.b, "resume"),
        (w.c, "resume"),
        (w.a, "resume"),  # A's last event: after every event of B and C but two
        (w.b, "pause"),  # B's last: after every event of A
        (w.c, "pause"),  # C's last: after every event of A and B
    ):
        await act(case_id, action)
    async with h.runtime.db.reader() as s:
        rows = list(await s.execute(select(*EVENT_COLUMNS).order_by(CaseEvent.id)))
        cases = {c.id: c for c in await s.scalars(select(Case))}
    last = {case_id: max(r.id for r in rows if r.case_id == case_id) for case_id in cases}
    until.update(a=last[w.a], b=last[w.b], roads=last[w.c])
    known.set()
    await asyncio.gather(*watchers)

    own = {"a": {w.a}, "b": {w.b, w.c}, "roads": {w.c}}
    for name, events in live.items():
        expected = [r.id for r in rows if r.case_id in own[name] and r.id <= until[name]]
        assert [e["cursor"] for e in events] == expected, name
        # replayed from the start: the same, also with a filter wider than the scope
        url = await h.feed_url("operator", name, scopes[name], since=0)
        assert [e["cursor"] for e in await read_until(url, until[name])] == expected, name
    url = await h.feed_url("operator", "a", scopes["a"], since=0, street="330106")
    assert [e["case_id"] for e in await read_until(url, until["a"])] == [w.a] * len(live["a"])

    # asking for the other street, or a grid of it, closes the door before the handshake
    for query in ({"street": w.street_b}, {"grid": f"{w.grid_a},{w.grid_b}"}):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(
                await h.feed_url("operator", "a", scopes["a"], **query), open_timeout=5
            ):
                pass
        assert refused.value.response.status_code == 403

    # every stored event, both ways the hub matches (in memory live, in SQL on replay), against
    # the truth of the cases table: the events' own grid and department columns are right
    for text in (*scopes.values(), f"community:{w.grid_b[:12]}", "district:330106"):
        scope = parse_scope(text)
        truth = [r.id for r in rows if scope.covers_case(cases[r.case_id])]
        flt = FeedFilter(scope=scope)
        assert [r.id for r in rows if flt.matches(envelope_of(r))] == truth, text
        async with h.runtime.db.reader() as s:
            assert [e.cursor for e in await replay(s, flt, 0, limit=10_000)] == truth, text
        assert truth or scope.kind is ScopeKind.COMMUNITY


async def _subscribers(h: Harness, n: int) -> bool:
    return h.runtime.hub.subscribers >= n


# --- scoped admins --------------------------------------------------------------------------


async def test_a_scoped_admin_manages_the_workers_of_its_scope(h: Harness) -> None:
    street, other = "330106001", "330106002"
    mine = h.auth("admin", "admin-hu", f"street:{street}")
    roads = h.auth("admin", "admin-roads", "department:roads")

    async def workers(who: dict[str, str], **params: str) -> list[dict[str, Any]]:
        r = await h.client.get("/v1/admin/workers", params={"limit": "1000", **params}, headers=who)
        assert r.status_code == 200, r.text
        return list(r.json())

    async with h.runtime.db.reader() as s:
        everyone = list(await s.scalars(select(Worker)))
    listed = await workers(mine)
    assert {x["id"] for x in listed} == {
        x.id for x in everyone if x.grid_code.startswith(street) and x.department is None
    }
    assert {x["id"] for x in await workers(roads)} == {
        x.id for x in everyone if x.department == "roads"
    }
    for params in ({"department": "roads"}, {"grid": other}):
        r = await h.client.get("/v1/admin/workers", params=params, headers=mine)
        assert (r.status_code, r.json()["error"]) == (403, "outside_scope")

    here = next(x for x in everyone if x.grid_code.startswith(street) and x.department is None)
    there = next(x for x in everyone if x.grid_code.startswith(other) and x.department is None)
    crew = next(x for x in everyone if x.department == "roads")

    async def save(who: dict[str, str], worker_id: str, **profile: Any) -> int:
        body = {"name": "网格员", **profile}
        r = await h.client.put(f"/v1/admin/workers/{worker_id}", json=body, headers=who)
        assert r.status_code in (200, 403), r.text
        return r.status_code

    before = await h.counts()
    assert await save(mine, here.id, grid=there.grid_code) == 403  # moving it out
    assert await save(mine, there.id, grid=there.grid_code) == 403  # another street's
    assert await save(mine, here.id, grid=here.grid_code, department="roads") == 403
    assert await save(mine, crew.id, grid=here.grid_code) == 403  # the department's crew
    assert await save(roads, "w-new-roads", grid=here.grid_code) == 403  # a grid worker
    assert await h.counts() == before
    async with h.runtime.db.reader() as s:
        assert (await s.get(Worker, here.id)).grid_code == here.grid_code  # type: ignore[union-attr]
    assert await save(mine, here.id, grid=here.grid_code, capacity=5) == 200
    assert await save(mine, "w-new-hu", grid=here.grid_code) == 200
    assert await save(roads, "w-new-roads", grid=there.grid_code, department="roads") == 200
    assert await save(h.auth("admin", "root"), there.id, grid=here.grid_code) == 200  # the city
