"""`gridflow demo`: simulated residents, sensors and workers against a running server.

Residents report problems (some with a photo), two cameras raise repeated alerts (which merge
into one case each), workers accept, walk over, arrive and resolve, and residents rate the
result; one resident is not satisfied, so that case is reopened and worked again. Road repairs
go to the roads department's crews and are checked on site by an inspector (核查), who sends
the first one back as rework (返工). One SLA drill (the demo city's `sla_drill` category, with
clocks of seconds) shows the rest: its first worker accepts and never arrives, so the case warns,
breaches, calls the grid leader, is re-offered, breaches its close clock, calls the street office
and is raised in priority before the second worker resolves it. Every case event is printed from
the operations feed as it happens. Tokens are minted with the server's
signing secret and the demo sensors' keys are read from the data directory, so run it from the
directory the server runs in (or with the same GRIDFLOW_DATA_DIR).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import websockets

from app.auth.tokens import Role, issue_token
from app.devices.keys import sign
from app.platform.settings import Settings
from geo import Progress, no_progress
from geo.demo_city import EAST, NORTH, SOUTH, WEST, demo_grids, demo_workers

DRILL = "sla_drill"

CATEGORIES = [
    "garbage_overflow",
    "street_vending",
    "illegal_parking",
    "road_damage",
    "fire_lane_blocked",
    "other",
]
DESCRIPTIONS = {
    "garbage_overflow": "小区门口垃圾桶满了，气味很大",
    "street_vending": "人行道上有流动摊贩占道",
    "illegal_parking": "车辆停在盲道上",
    "road_damage": "路面有个大坑，电动车容易摔倒",
    "fire_lane_blocked": "消防通道被私家车堵住了",
    "other": "路灯不亮了",
}


def _photo() -> bytes:
    from PIL import Image

    img = Image.new("RGB", (64, 48), (random.randint(0, 255), 120, 80))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


class Demo:
    def __init__(
        self,
        settings: Settings,
        base_url: str,
        cases: int,
        timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        told: Progress = no_progress,
    ) -> None:
        self.told = told  # "cases closed", as they close
        self.clock = clock  # the server's time, for sensors' signatures and observations
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.n_cases = cases
        self.timeout_s = timeout_s
        self.secret = settings.jwt_secret()
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30)
        self.report_owner: dict[str, str] = {}  # report id -> resident id
        self.case_reports: dict[str, list[str]] = {}  # case id -> resident report ids
        self.our_cases: set[str] = set()
        self.our_reports: set[str] = set()
        self.closed: set[str] = set()
        self.tasks_handled: set[str] = set()
        self.unhappy_once = False
        self.rework_once = False
        self.drill = False  # whether the server has the demo city's drill category
        self.drill_cases: set[str] = set()
        self.drill_offered: set[str] = set()  # drill cases whose first offer was handled
        self.close_breached: set[str] = set()
        self.where: dict[str, dict[str, float]] = {}  # case id -> its location
        inspectors = [w.id for w in demo_workers(demo_grids()) if "inspect" in w.skills]
        self.inspector = inspectors[0]
        self.agents: set[asyncio.Task[None]] = set()
        self.start = datetime.now(UTC)
        self.progress = asyncio.Event()

    def token(self, role: Role, subject: str) -> str:
        auth = self.settings.auth
        return issue_token(
            self.secret,
            role=role,
            subject=subject,
            issuer=auth.issuer,
            audience=auth.audience,
            now=datetime.now(UTC),
            ttl_s=3600,
        )

    def bearer(self, role: Role, subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    def say(self, text: str) -> None:
        elapsed = (datetime.now(UTC) - self.start).total_seconds()
        print(f"[{elapsed:6.1f}s] {text}", flush=True)

    async def run(self) -> int:
        try:
            ready = await self.http.get("/readyz")
        except httpx.HTTPError as exc:
            print(
                f"gridflow demo: no server at {self.base_url} ({exc}); start it with `make run`",
                file=sys.stderr,
            )
            return 2
        if ready.status_code != 200:
            print(f"gridflow demo: server not ready: {ready.text}", file=sys.stderr)
            return 2
        operator = {"Authorization": f"Bearer {self.token(Role.OPERATOR, 'demo-operator')}"}
        ticket = (await self.http.post("/v1/tickets", headers=operator)).json()["ticket"]
        ws_url = self.base_url.replace("http", "ws", 1) + "/v1/feed?ticket=" + ticket
        async with websockets.connect(ws_url) as ws:
            watcher = asyncio.create_task(self.watch(ws))
            categories = (await self.http.get("/v1/categories")).json()
            self.drill = any(c["code"] == DRILL for c in categories)
            if self.drill:
                await self.send_drill()
            else:
                self.say("no sla_drill category (not the demo city): no escalations shown")
            await self.send_reports()
            await self.send_alerts()
            try:
                await asyncio.wait_for(self.all_closed(), timeout=self.timeout_s)
            except TimeoutError:
                open_ = sorted(self.our_cases - self.closed)
                self.say(f"timed out with {len(open_)} case(s) still open: {open_}")
                return 1
            finally:
                watcher.cancel()
                for agent in self.agents:
                    agent.cancel()
        self.say(f"all {len(self.our_cases)} cases reached closed")
        await self.http.aclose()
        return 0

    async def all_closed(self) -> None:
        while len(self.our_cases) < self.expected_cases or self.our_cases - self.closed:
            self.progress.clear()
            await self.progress.wait()

    @property
    def expected_cases(self) -> int:
        return self.n_cases + 2 + self.drill  # two cameras, each one merged case; the drill

    async def send_drill(self) -> None:
        resident = f"resident-{uuid.uuid4().hex[:6]}"
        body = {
            "category": DRILL,
            "description": "超时演练：网格员迟迟未到场",
            "location": {"lat": (SOUTH + NORTH) / 2, "lon": (WEST + EAST) / 2},
        }
        r = await self.http.post(
            "/v1/reports", json=body, headers=self.bearer(Role.RESIDENT, resident)
        )
        if r.status_code != 201:
            self.say(f"drill report refused: {r.status_code} {r.text}")
            self.drill = False
            return
        data = r.json()
        self.report_owner[data["id"]] = resident
        self.our_reports.add(data["id"])
        self.say(f"resident {resident} reported an SLA drill in {data['grid']['name']}")

    async def send_reports(self) -> None:
        for i in range(self.n_cases):
            resident = f"resident-{uuid.uuid4().hex[:6]}"
            category = CATEGORIES[i % len(CATEGORIES)]
            lon = random.uniform(WEST + 0.002, EAST - 0.002)
            lat = random.uniform(SOUTH + 0.002, NORTH - 0.002)
            body = {
                "category": category,
                "description": DESCRIPTIONS[category],
                "location": {"lat": lat, "lon": lon, "crs": "wgs84"},
            }
            headers = self.bearer(Role.RESIDENT, resident)
            if i % 2 == 0:
                files: dict[str, tuple[str | None, bytes, str]] = {
                    "report": (None, json.dumps(body).encode(), "application/json"),
                    "photos": ("photo.jpg", _photo(), "image/jpeg"),
                }
                r = await self.http.post("/v1/reports", files=files, headers=headers)
            else:
                r = await self.http.post("/v1/reports", json=body, headers=headers)
            if r.status_code != 201:
                self.say(f"report refused: {r.status_code} {r.text}")
                continue
            data = r.json()
            self.report_owner[data["id"]] = resident
            self.our_reports.add(data["id"])
            self.say(
                f"resident {resident} reported {category} in {data['grid']['name']} "
                f"({data['grid']['code']})"
            )

    async def send_alerts(self) -> None:
        path = self.settings.data_dir / "demo-devices.json"
        devices: dict[str, Any] = json.loads(path.read_text())
        for device_id in list(devices)[:2]:
            dev = devices[device_id]
            for n in range(3):
                body = {
                    "external_id": f"{device_id}-{uuid.uuid4().hex[:8]}",
                    "category": dev["category"],
                    "confidence": 0.9,
                    "observed_at": self.clock().isoformat(),
                    "location": {"lat": dev["lat"], "lon": dev["lon"]},
                }
                raw = json.dumps(body).encode()
                stamp = str(int(self.clock().timestamp()))
                signature = sign(dev["secret"], stamp, "POST", "/v1/alerts", raw)
                headers = {
                    "Content-Type": "application/json",
                    "X-Device-Key-Id": dev["key_id"],
                    "X-Timestamp": stamp,
                    "X-Signature": signature,
                }
                r = await self.http.post("/v1/alerts", content=raw, headers=headers)
                if r.status_code != 202:
                    self.say(f"alert refused: {r.status_code} {r.text}")
                    continue
                self.our_reports.add(r.json()["id"])
                self.say(f"sensor {device_id} alert {n + 1}/3: {dev['category']}")
                await asyncio.sleep(0.1)

    async def watch(self, ws: Any) -> None:
        async for raw in ws:
            ev = json.loads(raw)
            if ev.get("type") == "heartbeat":
                continue
            case_id, data = ev["case_id"], ev["data"]
            kind = ev["type"]
            if kind in ("CaseOpened", "ReportMerged") and data.get("report_id") in self.our_reports:
                self.our_cases.add(case_id)
                if kind == "CaseOpened":
                    self.where[case_id] = {"lat": data["lat"], "lon": data["lon"]}
                    if data.get("category") == DRILL:
                        self.drill_cases.add(case_id)
                if data["report_id"] in self.report_owner:
                    self.case_reports.setdefault(case_id, []).append(data["report_id"])
            if case_id not in self.our_cases:
                continue
            extra = ""
            if kind == "TaskOffered":
                extra = f"→ {data['worker_name']} ({data['worker_id']})"
                self.spawn(self.work(case_id, data["worker_id"], data["task_id"]))
            elif kind == "SlaWarning":
                extra = f"{data['clock']} clock at {data['percent']} %, due {data['due_at']}"
            elif kind == "SlaBreached":
                extra = f"{data['clock']} clock, escalation level {data['escalation_level']}"
                if data["clock"] == "close":
                    self.close_breached.add(case_id)
            elif kind == "CaseEscalated":
                extra = f"{data['action']}"
                if data.get("to"):
                    extra += f" → {data['to']}"
                if data.get("from_worker_id"):
                    extra += f": taken from {data['from_worker_id']}"
                if data["action"] == "raise_priority":
                    extra += f" {data['priority_from']} → {data['priority']}"
                if data.get("reason") == "refusals":
                    extra += f" after {data['refusals']} refusals"
            elif kind == "CaseResolved":
                extra = f"“{data.get('note', '')}”"
                if "verify_due_at" in data:
                    extra += " — waiting for the inspector (核查)"
                    self.spawn(self.inspect(case_id))
                else:
                    self.rate_all(case_id)
            elif kind == "VerificationPassed":
                extra = f"“{data.get('note', '')}”"
                self.rate_all(case_id)
            elif kind == "CaseReworked":
                extra = f"返工: “{data.get('note', '')}”"
            elif kind == "CaseClosed":
                extra = data.get("reason", "")
                self.closed.add(case_id)
                closed = len(self.closed & self.our_cases)
                self.told("cases closed", closed, max(self.expected_cases, closed))
            elif kind == "FeedbackReceived":
                extra = "satisfied" if data.get("satisfied") else "NOT satisfied"
            self.progress.set()
            self.say(f"{kind:<17} case {case_id[:8]} grid {ev['grid']} {ev['category']} {extra}")

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.agents.add(task)
        task.add_done_callback(self.agents.discard)

    def rate_all(self, case_id: str) -> None:
        for report_id in self.case_reports.get(case_id, []):
            self.spawn(self.rate(report_id))

    async def work(self, case_id: str, worker_id: str, task_id: str) -> None:
        if task_id in self.tasks_handled:
            return
        first_drill_offer = case_id in self.drill_cases and case_id not in self.drill_offered
        self.drill_offered.add(case_id)
        self.tasks_handled.add(task_id)
        headers = self.bearer(Role.WORKER, worker_id)
        await asyncio.sleep(random.uniform(0.2, 0.8))
        r = await self.http.post(f"/v1/tasks/{task_id}/accept", headers=headers)
        if r.status_code != 200:
            self.say(f"worker {worker_id} could not accept: {r.status_code} {r.text}")
            return
        if first_drill_offer:
            self.say(f"worker {worker_id} accepted the drill and is held up: never arrives")
            return
        loc = r.json()["location"]
        await asyncio.sleep(random.uniform(0.3, 1.0))  # walking over
        r = await self.http.post(
            f"/v1/tasks/{task_id}/arrive",
            headers=headers,
            json={"location": {"lat": loc["lat"] + 0.0002, "lon": loc["lon"]}},
        )
        if r.status_code != 200:
            self.say(f"worker {worker_id} could not arrive: {r.status_code} {r.text}")
            return
        await asyncio.sleep(random.uniform(0.3, 1.0))  # doing the work
        if case_id in self.drill_cases:
            # The drill's second worker finishes only after the close clock has run out.
            for _ in range(900):
                if case_id in self.close_breached:
                    break
                await asyncio.sleep(0.1)
        r = await self.http.post(
            f"/v1/tasks/{task_id}/resolve", headers=headers, json={"note": "已处理完毕 / handled"}
        )
        if r.status_code != 200:
            self.say(f"worker {worker_id} could not resolve: {r.status_code} {r.text}")

    async def inspect(self, case_id: str) -> None:
        """The inspector walks over and checks the repair; the first one is sent back."""
        await asyncio.sleep(random.uniform(0.3, 1.0))
        passed = self.rework_once
        self.rework_once = True
        body = {
            "passed": passed,
            "note": "路面已平整 / repair holds" if passed else "补丁已开裂，返工 / redo it",
            "location": self.where[case_id],
        }
        r = await self.http.post(
            f"/v1/cases/{case_id}/verify",
            json=body,
            headers=self.bearer(Role.WORKER, self.inspector),
        )
        if r.status_code != 200:
            self.say(f"inspector {self.inspector} could not verify: {r.status_code} {r.text}")

    async def rate(self, report_id: str) -> None:
        await asyncio.sleep(random.uniform(0.2, 0.6))
        satisfied = self.unhappy_once
        self.unhappy_once = True  # the first rating is a complaint, to show a reopened case
        headers = self.bearer(Role.RESIDENT, self.report_owner[report_id])
        body = {
            "satisfied": satisfied,
            "score": 5 if satisfied else 2,
            "comment": None if satisfied else "还没处理干净",
        }
        r = await self.http.post(f"/v1/reports/{report_id}/feedback", json=body, headers=headers)
        if r.status_code != 200:
            self.say(f"feedback refused: {r.status_code} {r.text}")


async def run_demo(
    settings: Settings,
    *,
    base_url: str,
    cases: int,
    timeout_s: float,
    progress: Progress = no_progress,
) -> int:
    return await Demo(settings, base_url, cases, timeout_s, told=progress).run()
