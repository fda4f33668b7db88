"""The whole loop through the real server: report → case → offer → accept → arrive → resolve →
feedback → closed, every step seen on the operations feed and on the resident's SSE stream."""

import asyncio
import json
from typing import Any

import websockets

from tests.harness import Harness, png_bytes, sse_events

LOOP = [
    "CaseOpened",
    "TaskOffered",
    "TaskAccepted",
    "WorkerArrived",
    "CaseResolved",
    "FeedbackReceived",
    "CaseClosed",
]


async def collect_feed(url: str, until: str, out: list[dict[str, Any]]) -> None:
    async with asyncio.timeout(20), websockets.connect(url) as ws:
        async for raw in ws:
            event = json.loads(raw)
            if event.get("type") == "heartbeat":
                continue
            out.append(event)
            if event["type"] == until:
                return


async def test_report_to_closed_seen_live(h: Harness) -> None:
    ws_url = await h.feed_url()
    feed: list[dict[str, Any]] = []
    feed_task = asyncio.create_task(collect_feed(ws_url, "CaseClosed", feed))
    await asyncio.sleep(0)  # let the socket connect before the report exists

    # Connect the feed first, so "live" really is live.
    async def feed_connected() -> bool:
        return bool(h.runtime.hub._subs)

    await h.eventually(feed_connected, what="feed subscriber")

    resident = h.auth("resident", "alice")
    report = await h.report("alice", "garbage_overflow")
    sse: list[dict[str, Any]] = []

    async def read_sse() -> None:
        async for ev in sse_events(
            h.client, f"/v1/reports/{report['id']}/events", resident, until="CaseClosed"
        ):
            sse.append(ev)

    sse_task = asyncio.create_task(read_sse())

    case_id = await h.case_of(report["id"])
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])

    polled = await h.client.get("/v1/tasks", params={"wait": 5}, headers=worker)
    assert polled.status_code == 200
    [mine] = polled.json()["tasks"]
    assert mine["id"] == task["id"] and mine["status"] == "offered"

    r = await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    loc = r.json()["location"]
    near = {"lat": loc["lat"] + 0.0005, "lon": loc["lon"]}  # about 55 m north
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/arrive", json={"location": near}, headers=worker
    )
    assert r.status_code == 200 and r.json()["status"] == "on_site", r.text
    files = [
        ("resolution", (None, json.dumps({"note": "清理完毕"}))),
        ("photos", ("after.jpg", png_bytes((60, 40), "JPEG"), "image/jpeg")),
    ]
    r = await h.client.post(f"/v1/tasks/{task['id']}/resolve", files=files, headers=worker)
    assert r.status_code == 200 and r.json()["status"] == "resolved", r.text

    view = (await h.client.get(f"/v1/reports/{report['id']}", headers=resident)).json()
    assert view["status"] == "resolved"
    assert view["assignee"]["display_name"]
    assert view["deadlines"]["on_site_due_at"] and view["deadlines"]["close_due_at"]

    r = await h.client.post(
        f"/v1/reports/{report['id']}/feedback",
        json={"satisfied": True, "score": 5, "comment": "很快 👍"},
        headers=resident,
    )
    assert r.status_code == 200 and r.json()["case_status"] == "closed", r.text

    await asyncio.wait_for(asyncio.gather(feed_task, sse_task), timeout=20)
    assert [e["type"] for e in feed] == LOOP
    assert all(e["case_id"] == case_id and e["grid"] == report["grid"]["code"] for e in feed)
    cursors = [e["cursor"] for e in feed]
    assert cursors == sorted(cursors)
    assert [e["type"] for e in sse] == LOOP
    assert "worker_id" not in json.dumps([e["data"] for e in sse])  # residents see names only
    assert "alice" not in json.dumps(feed)  # the wall screen never names the resident
    assert "resident" in {e["actor"] for e in feed}  # only that a resident gave feedback

    final = (await h.client.get(f"/v1/reports/{report['id']}", headers=resident)).json()
    assert final["status"] == "closed"
    assert [t["type"] for t in final["timeline"]] == LOOP
    assert final["feedback_given"] is True


async def test_sse_resumes_after_last_event_id(h: Harness) -> None:
    resident = h.auth("resident", "carol")
    report = await h.report("carol")
    case_id = await h.case_of(report["id"])
    await h.offered_task(case_id)
    url = f"/v1/reports/{report['id']}/events"
    first = [e async for e in sse_events(h.client, url, resident, until="TaskOffered")]
    assert [e["type"] for e in first] == ["CaseOpened", "TaskOffered"]
    task = await h.offered_task(case_id)
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/accept", headers=h.auth("worker", task["worker_id"])
    )
    assert r.status_code == 200
    resumed = [
        e
        async for e in sse_events(
            h.client, url, {**resident, "Last-Event-ID": first[-1]["_id"]}, until="TaskAccepted"
        )
    ]
    assert [e["type"] for e in resumed] == ["TaskAccepted"]


async def test_feed_resumes_from_cursor_and_filters(h: Harness) -> None:
    a = await h.report("a", "garbage_overflow")
    await h.offered_task(await h.case_of(a["id"]))
    far = h.runtime.grids.require().units[-1].geometry.representative_point()
    b = await h.report("b", "street_vending", point={"lat": far.y, "lon": far.x})
    await h.offered_task(await h.case_of(b["id"]))

    async def url(query: str) -> str:  # a new ticket for every connection
        return await h.feed_url() + query

    everything: list[dict[str, Any]] = []
    async with asyncio.timeout(10), websockets.connect(await url("&since=0")) as ws:
        while len(everything) < 4:
            everything.append(json.loads(await ws.recv()))
    assert [e["type"] for e in everything] == ["CaseOpened", "TaskOffered"] * 2

    only_b: list[dict[str, Any]] = []
    street_b = b["grid"]["code"][:9]
    async with (
        asyncio.timeout(10),
        websockets.connect(await url(f"&since=0&street={street_b}&category=street_vending")) as ws,
    ):
        while len(only_b) < 2:
            only_b.append(json.loads(await ws.recv()))
    assert {e["grid"] for e in only_b} == {b["grid"]["code"]}

    after_first = everything[0]["cursor"]
    resumed: list[dict[str, Any]] = []
    async with asyncio.timeout(10), websockets.connect(await url(f"&since={after_first}")) as ws:
        while len(resumed) < 3:
            resumed.append(json.loads(await ws.recv()))
    assert [e["cursor"] for e in resumed] == [e["cursor"] for e in everything[1:]]


async def test_long_poll_answers_when_a_task_arrives(h: Harness) -> None:
    grid = h.runtime.grids.require().units[1]  # a grid with a single worker
    worker_id = f"w-{grid.code}-1"
    worker = h.auth("worker", worker_id)

    empty = await h.client.get("/v1/tasks", params={"wait": 1}, headers=worker)
    assert empty.status_code == 200 and empty.json() == {"tasks": []}

    poll = asyncio.create_task(h.client.get("/v1/tasks", params={"wait": 30}, headers=worker))
    await asyncio.sleep(0.2)
    assert not poll.done()
    centre = grid.geometry.representative_point()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await h.report("dave", "illegal_parking", point={"lat": centre.y, "lon": centre.x})
    r = await asyncio.wait_for(poll, timeout=10)
    assert loop.time() - started < 10  # well before the 30 s wait ran out
    [task] = r.json()["tasks"]
    assert task["status"] == "offered" and task["grid"] == grid.code
