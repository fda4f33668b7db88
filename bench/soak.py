"""Soak (by hand, never in CI): does memory grow or anything fail under long mixed traffic?

    .venv/bin/python bench/soak.py [--minutes 30]                      # the embedded default
    deploy/local/with-services.sh .venv/bin/python bench/soak.py --services   # PostgreSQL + Kafka

Starts its own gridflow on 127.0.0.1 (`gridflow serve`; with `--services`, `gridflow api` and
one `gridflow dispatcher` on a new database and topic prefix of the local services) and drives
it as a city would, open loop, for `--minutes`:
  - residents file reports (a new resident each, some with a photo) and read them back; some
    follow their report over SSE (with a stream ticket, or the Authorization header), dropping
    and resuming now and then, until its case closes; residents rate resolved cases (a few are
    not satisfied: the case reopens and is worked again);
  - the demo city's sensors send signed alerts (repeats merge into their device's open case);
  - workers take every offer that reaches the operations feed: a few decline, the rest accept,
    arrive on site and resolve (some with a photo); other workers' phones long-poll their tasks
    and report their status;
  - operators list and read cases and figures; dashboards follow the WebSocket feed, each
    reconnecting every 20–60 s with a new ticket from its last cursor.
Every `--sample-s` it records each server process's resident memory (VmRSS) and open files,
answers by kind and status, how far each feed is behind the newest case event and, with
`--services`, what the database's sessions are waiting for. At the end
it checks every feed client against the database (every event at or below its last cursor
received once), and reports memory at start, after `--warmup-minutes` and at the end, the
growth per hour fitted to the samples after warm-up, and the errors: any 5xx answer, failed
request, missed feed event or traceback in the server's log fails the run. Writes
bench/results/soak-<date>.json (soak-<date>-postgresql.json with --services); the servers'
logs are kept in a temporary directory it names.
Every loop is bounded in count and time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.auth.tokens import Role, issue_token  # noqa: E402
from app.devices.keys import sign  # noqa: E402
from bench.pipeline import rss_mb, wait_http  # noqa: E402
from bench.soak_clients import Dashboard, Follower, photo  # noqa: E402
from bench.soak_server import Server  # noqa: E402
from geo.demo_city import EAST, NORTH, SOUTH, WEST, demo_grids, demo_workers  # noqa: E402

PORT = 8321
CATEGORIES = ("garbage_overflow", "street_vending", "illegal_parking", "other")
MAX_AGENTS = 2000  # workers and residents acting at once; beyond, an action is skipped


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 3:
        return float("nan")
    return statistics.linear_regression([t for t, _ in points], [m for _, m in points]).slope * 3600


class Soak:
    def __init__(self, args: argparse.Namespace, server: Server, secret: str) -> None:
        self.args = args
        self.server = server
        self.secret = secret
        self.base = f"http://127.0.0.1:{PORT}"
        # Idle connections are dropped well before the server's keep-alive timeout (uvicorn:
        # 5 s, httpx's own default too): at equal timeouts a request now and then goes out on
        # a connection the server is closing and fails without reaching it.
        limits = httpx.Limits(max_connections=500, keepalive_expiry=2)
        self.http = httpx.AsyncClient(base_url=self.base, timeout=60, limits=limits)
        # The feed clients' streams on connections of their own.
        self.streams = httpx.AsyncClient(
            base_url=self.base, timeout=60, limits=httpx.Limits(keepalive_expiry=2)
        )
        self.rng = random.Random(args.seed)
        self.answers: Counter[str] = Counter()  # "kind status" -> count
        self.failures: Counter[str] = Counter()  # "kind ExceptionName" -> count
        self.closes: Counter[str] = Counter()  # feed connections the server closed, by code
        self.skipped = 0
        self.agents: set[asyncio.Task[None]] = set()
        self.residents: dict[str, str] = {}  # report id -> resident
        self.reports_of: dict[str, list[str]] = {}  # case id -> resident report ids
        self.cases: list[str] = []
        self.handled: set[str] = set()  # task ids acted on
        self.ratings: Counter[str] = Counter()  # report id -> ratings given
        self.dashboards: list[Dashboard] = []
        self.followers: list[Follower] = []
        self.operator_cursor = 0
        self.stop_at = 0.0
        self.tokens: dict[tuple[Role, str], str] = {}
        self.devices = json.loads((server.data / "demo-devices.json").read_text())
        self.phones = demo_workers(demo_grids())[: args.phones]

    # --- plumbing ---------------------------------------------------------------------------
    def token(self, role: Role, subject: str) -> str:
        """One token per caller for the whole run, as a phone keeps its own."""
        known = self.tokens.get((role, subject))
        if known is None:
            known = self.tokens[(role, subject)] = self._issue(role, subject)
        return known

    def _issue(self, role: Role, subject: str) -> str:
        ttl = int(self.args.minutes * 60 + 3600)
        now = datetime.now(UTC)
        return issue_token(
            self.secret,
            role=role,
            subject=subject,
            issuer="gridflow",
            audience="gridflow",
            now=now,
            ttl_s=ttl,
        )

    def bearer(self, role: Role, subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    async def call(self, kind: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        try:
            r = await self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.failures[f"{kind} {type(exc).__name__}"] += 1
            return None
        self.answers[f"{kind} {r.status_code}"] += 1
        return r

    def server_errors(self) -> int:
        return sum(n for key, n in self.answers.items() if key.split()[-1].startswith("5"))

    def spawn(self, coro: Any) -> None:
        if len(self.agents) >= MAX_AGENTS:
            coro.close()
            self.skipped += 1
            return
        task = asyncio.create_task(coro)
        self.agents.add(task)
        task.add_done_callback(self.agents.discard)

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def paced(self, rate: float, action: Any) -> None:
        """`action(i)` spawned at i / rate seconds until the end (open loop, bounded count)."""
        if rate <= 0:
            return
        start = time.monotonic()
        for i in range(int(rate * (self.stop_at - start)) + 1):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.running():
                return
            self.spawn(action(i))

    # --- residents --------------------------------------------------------------------------
    async def report(self, i: int) -> None:
        resident = f"resident-{i}-{uuid.uuid4().hex[:6]}"
        category = CATEGORIES[i % len(CATEGORIES)]
        body = {
            "category": category,
            "description": f"soak report {i}",
            "location": {
                "lat": self.rng.uniform(SOUTH + 0.002, NORTH - 0.002),
                "lon": self.rng.uniform(WEST + 0.002, EAST - 0.002),
            },
        }
        headers = self.bearer(Role.RESIDENT, resident)
        if i % 4 == 0:
            files = {
                "report": (None, json.dumps(body).encode(), "application/json"),
                "photos": ("photo.jpg", photo(self.rng), "image/jpeg"),
            }
            r = await self.call("report", "POST", "/v1/reports", files=files, headers=headers)
        else:
            r = await self.call("report", "POST", "/v1/reports", json=body, headers=headers)
        if r is None or r.status_code != 201:
            return
        report_id = r.json()["id"]
        self.residents[report_id] = resident
        if i % self.args.follow_every == 0:
            follower = Follower(self, report_id, resident, ticket=i % 2 == 0)
            self.followers.append(follower)
            self.spawn(follower.run(deadline=min(self.stop_at, time.monotonic() + 300)))
        await asyncio.sleep(self.rng.uniform(2, 10))
        await self.call("report read", "GET", f"/v1/reports/{report_id}", headers=headers)

    async def rate(self, report_id: str) -> None:
        """One in ten residents is not satisfied the first time (the case reopens and is
        worked again); the second rating is always satisfied, and closes the case."""
        self.ratings[report_id] += 1
        if self.ratings[report_id] > 2:
            return
        await asyncio.sleep(self.rng.uniform(0.5, 3))
        satisfied = self.ratings[report_id] == 2 or self.rng.random() >= 0.1
        body = {"satisfied": satisfied, "score": 5 if satisfied else 2}
        headers = self.bearer(Role.RESIDENT, self.residents[report_id])
        path = f"/v1/reports/{report_id}/feedback"
        await self.call("feedback", "POST", path, json=body, headers=headers)

    # --- sensors ----------------------------------------------------------------------------
    async def alert(self, i: int) -> None:
        device = list(self.devices.values())[i % len(self.devices)]
        body = json.dumps(
            {
                "external_id": f"soak-{i}-{uuid.uuid4().hex[:8]}",
                "category": device["category"],
                "location": {"lat": device["lat"], "lon": device["lon"]},
                "observed_at": datetime.now(UTC).isoformat(),
                "confidence": 0.9,
            }
        ).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Device-Key-Id": device["key_id"],
            "X-Timestamp": stamp,
            "X-Signature": sign(device["secret"], stamp, "POST", "/v1/alerts", body),
        }
        await self.call("alert", "POST", "/v1/alerts", content=body, headers=headers)

    # --- workers ----------------------------------------------------------------------------
    async def work(self, task_id: str, worker_id: str) -> None:
        if task_id in self.handled:
            return
        self.handled.add(task_id)
        headers = self.bearer(Role.WORKER, worker_id)
        await asyncio.sleep(self.rng.uniform(0.5, 3))
        if self.rng.random() < 0.08:
            path = f"/v1/tasks/{task_id}/decline"
            await self.call("decline", "POST", path, json={"reason": "busy"}, headers=headers)
            return
        r = await self.call("accept", "POST", f"/v1/tasks/{task_id}/accept", headers=headers)
        if r is None or r.status_code != 200:
            return
        loc = r.json()["location"]
        await asyncio.sleep(self.rng.uniform(0.5, 3))
        at = {"location": {"lat": loc["lat"] + 0.0002, "lon": loc["lon"]}}
        path = f"/v1/tasks/{task_id}/arrive"
        r = await self.call("arrive", "POST", path, json=at, headers=headers)
        if r is None or r.status_code != 200:
            return
        await asyncio.sleep(self.rng.uniform(0.5, 3))
        note = {"note": "handled"}
        path = f"/v1/tasks/{task_id}/resolve"
        if self.rng.random() < 0.25:
            files = {
                "resolution": (None, json.dumps(note).encode(), "application/json"),
                "photos": ("after.jpg", photo(self.rng), "image/jpeg"),
            }
            await self.call("resolve", "POST", path, files=files, headers=headers)
        else:
            await self.call("resolve", "POST", path, json=note, headers=headers)

    async def phone(self, n: int) -> None:
        """A worker's phone: long-polls its tasks, reports on duty and where it is."""
        worker = self.phones[n]
        headers = self.bearer(Role.WORKER, worker.id)
        status = {"on_duty": True, "location": {"lat": worker.lat, "lon": worker.lon}}
        for i in range(int(self.args.minutes * 60) + 1):  # at least 1 s per round
            if not self.running():
                return
            if i % 3 == 0:
                path = "/v1/workers/me/status"
                await self.call("worker status", "PUT", path, json=status, headers=headers)
            poll = {"wait": 20}
            await self.call("tasks poll", "GET", "/v1/tasks", params=poll, headers=headers)
            await asyncio.sleep(1)  # a phone that was answered at once does not spin

    # --- operators --------------------------------------------------------------------------
    async def operator_read(self, i: int) -> None:
        headers = self.bearer(Role.OPERATOR, f"ops-{i % 5}")
        if i % 60 == 0:
            await self.call("stats", "GET", "/v1/stats", params={"by": "street"}, headers=headers)
        elif i % 2 == 0 and self.cases:
            case_id = self.rng.choice(self.cases[-500:])
            await self.call("case read", "GET", f"/v1/cases/{case_id}", headers=headers)
        else:
            status = self.rng.choice(["dispatched", "accepted", "on_site", "resolved", None])
            params = {"status": status} if status else {}
            await self.call("cases list", "GET", "/v1/cases", params=params, headers=headers)

    async def operations_feed(self) -> None:
        """The operations centre's screen, from which the workers' offers and the residents'
        ratings are driven; reconnects from its cursor if dropped."""
        url = self.base.replace("http", "ws", 1) + "/v1/feed"
        headers = self.bearer(Role.OPERATOR, "ops-driver")
        for _ in range(1000):
            try:
                async with websockets.connect(
                    f"{url}?since={self.operator_cursor}", additional_headers=headers, max_size=None
                ) as ws:
                    async for raw in ws:
                        self.on_event(json.loads(raw))
            except websockets.ConnectionClosed as exc:
                self.closes[f"operations feed closed {exc.rcvd.code if exc.rcvd else 'none'}"] += 1
            except (OSError, websockets.WebSocketException) as exc:
                self.failures[f"operations feed {type(exc).__name__}"] += 1
                await asyncio.sleep(1)

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev["type"] == "heartbeat":
            return
        self.operator_cursor = ev["cursor"]
        kind, case_id, data = ev["type"], ev["case_id"], ev["data"]
        if kind == "CaseOpened":
            self.cases.append(case_id)
        if kind in ("CaseOpened", "ReportMerged") and data.get("report_id") in self.residents:
            self.reports_of.setdefault(case_id, []).append(data["report_id"])
        if kind == "TaskOffered":
            self.spawn(self.work(data["task_id"], data["worker_id"]))
        elif kind == "CaseResolved" and "verify_due_at" not in data:
            for report_id in self.reports_of.get(case_id, []):
                self.spawn(self.rate(report_id))

    # --- the run ----------------------------------------------------------------------------
    async def sample(self, started: float) -> dict[str, Any]:
        row: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
        for name, pid in self.server.pids().items():
            row[f"{name}_rss_mb"] = round(rss_mb(pid), 1)
            row[f"{name}_fds"] = open_files(pid)
        newest = await self.server.newest_event()
        row["events"] = newest
        row["feed_lag"] = max((newest - d.cursor for d in self.dashboards), default=0)
        row["requests"] = sum(self.answers.values())
        row["5xx"] = self.server_errors()
        row["failed"] = sum(self.failures.values())
        if sessions := await self.server.sessions():
            row["pg_sessions"] = sessions
        row["agents"] = len(self.agents)
        row["streams"] = sum(1 for f in self.followers if f.open)
        return row

    async def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        self.stop_at = started + args.minutes * 60
        feed = asyncio.create_task(self.operations_feed())
        self.dashboards = [Dashboard(self, f"dashboard-{n}", n) for n in range(args.dashboards)]
        screens = [asyncio.create_task(d.run()) for d in self.dashboards]
        phones = [asyncio.create_task(self.phone(n)) for n in range(len(self.phones))]
        loops = [
            *screens,
            *phones,
            asyncio.create_task(self.paced(args.report_rate, self.report)),
            asyncio.create_task(self.paced(args.alert_rate, self.alert)),
            asyncio.create_task(self.paced(args.read_rate, self.operator_read)),
        ]
        samples: list[dict[str, Any]] = []
        for _ in range(int(args.minutes * 60 / args.sample_s) + 2):
            samples.append(await self.sample(started))
            print(json.dumps(samples[-1]), flush=True)
            remaining = self.stop_at - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(args.sample_s, remaining))
        # The traffic stops; what is in flight finishes, long polls included (a request cut
        # off by the server's stop is not what this measures), and the feeds catch up; each
        # wait bounded.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while self.agents:
                    await asyncio.wait(set(self.agents))
                await asyncio.gather(*phones)
        newest = await self.server.newest_event()
        for d in self.dashboards:
            d.target = newest
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*screens)
        samples.append(await self.sample(started))
        for task in (feed, *loops, *self.agents):
            task.cancel()
        await asyncio.gather(feed, *loops, *self.agents, return_exceptions=True)
        await self.http.aclose()
        await self.streams.aclose()
        return {"samples": samples, "feeds": await self.check_feeds()}

    async def check_feeds(self) -> dict[str, Any]:
        """Every feed client against the database: each event at or below its last cursor
        reached it exactly once."""
        events = await self.server.events()  # (id, case_id) in id order
        out: dict[str, Any] = {"dashboards": [], "followers": {}}
        for d in self.dashboards:
            expected = [i for i, _ in events if i <= d.cursor]
            got = Counter(d.received)
            out["dashboards"].append(
                {
                    "name": d.name,
                    "connections": d.connections,
                    "received": len(d.received),
                    "expected": len(expected),
                    "missed": sum(1 for i in expected if i not in got),
                    "doubled": sum(n - 1 for n in got.values() if n > 1),
                    "out_of_order": d.out_of_order,
                    "behind_at_end": events[-1][0] - d.cursor if events else 0,
                }
            )
        by_case: dict[str, list[int]] = {}
        for i, case_id in events:
            by_case.setdefault(case_id, []).append(i)
        missed = doubled = received = closed = 0
        for f in self.followers:
            expected = [i for i in by_case.get(f.case_id or "", []) if i <= f.cursor]
            got = Counter(f.received)
            received += len(f.received)
            missed += sum(1 for i in expected if i not in got)
            doubled += sum(n - 1 for n in got.values() if n > 1)
            closed += f.saw_closed
        out["followers"] = {
            "followed": len(self.followers),
            "connections": sum(f.connections for f in self.followers),
            "saw_case_closed": closed,
            "received": received,
            "missed": missed,
            "doubled": doubled,
            "out_of_order": sum(f.out_of_order for f in self.followers),
        }
        return out


def summarise(result: dict[str, Any], warmup_s: float) -> dict[str, Any]:
    samples = result["samples"]
    names = [k[: -len("_rss_mb")] for k in samples[0] if k.endswith("_rss_mb")]
    memory = {}
    for name in names:
        key = f"{name}_rss_mb"
        after = [s for s in samples if s["t"] >= warmup_s] or samples[-1:]
        memory[name] = {
            "start_mb": samples[0][key],
            "after_warmup_mb": after[0][key],
            "end_mb": samples[-1][key],
            "peak_mb": max(s[key] for s in samples),
            "growth_mb_per_h": round(slope_per_hour([(s["t"], s[key]) for s in after]), 1),
            "fds_start": samples[0][f"{name}_fds"],
            "fds_end": samples[-1][f"{name}_fds"],
        }
    return memory


def print_summary(result: dict[str, Any]) -> None:
    print(f"\n{result['date']}  {result['machine']}  {result['mode']}  {result['minutes']} min")
    for name, m in result["memory"].items():
        print(
            f"{name:<12} RSS start {m['start_mb']:.0f} MB, after warm-up "
            f"{m['after_warmup_mb']:.0f} MB, end {m['end_mb']:.0f} MB (peak {m['peak_mb']:.0f}); "
            f"growth {m['growth_mb_per_h']:+.1f} MB/h after warm-up; "
            f"open files {m['fds_start']} -> {m['fds_end']}"
        )
    print(f"requests: {result['requests']}, by kind and status:")
    for key, n in sorted(result["answers"].items()):
        print(f"  {key:<28} {n:>8}")
    print(
        f"5xx: {result['errors']['5xx']}, failed requests: {result['failures'] or 0}, "
        f"feed connections closed by the server: {result['closes'] or 0}, "
        f"skipped actions: {result['skipped']}"
    )
    print(f"server log: {result['server_log']}")
    for d in result["feeds"]["dashboards"]:
        print(f"  {d}")
    print(f"  followers: {result['feeds']['followers']}")
    print("PASS" if result["passed"] else "FAIL")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Kafka")
    parser.add_argument("--report-rate", type=float, default=2.0, help="resident reports/s")
    parser.add_argument("--alert-rate", type=float, default=1.0, help="sensor alerts/s")
    parser.add_argument("--read-rate", type=float, default=2.0, help="operator reads/s")
    parser.add_argument("--phones", type=int, default=20, help="workers long-polling tasks")
    parser.add_argument("--dashboards", type=int, default=3, help="WebSocket feed clients")
    parser.add_argument("--follow-every", type=int, default=5, help="1 report in N followed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    secret = secrets.token_urlsafe(48)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "mode": "postgresql+kafka" if args.services else "embedded",
        "minutes": args.minutes,
        "rates": {
            "reports_per_s": args.report_rate,
            "alerts_per_s": args.alert_rate,
            "operator_reads_per_s": args.read_rate,
            "phones": args.phones,
            "dashboards": args.dashboards,
            "followed": f"1 report in {args.follow_every}",
        },
    }
    with tempfile.TemporaryDirectory(prefix="gridflow-soak-") as tmp:
        server = Server(Path(tmp), PORT, secret, services=args.services)
        try:
            await server.start()
            await wait_http(f"http://127.0.0.1:{PORT}/readyz", timeout=120)
            soak = Soak(args, server, secret)
            run = await soak.run()
        finally:
            log = await server.stop()
    answers = dict(soak.answers)
    fives = soak.server_errors()
    feeds = run["feeds"]
    missed = sum(d["missed"] + d["doubled"] + d["out_of_order"] for d in feeds["dashboards"])
    f = feeds["followers"]
    missed += f["missed"] + f["doubled"] + f["out_of_order"]
    result.update(
        memory=summarise(run, args.warmup_minutes * 60),
        requests=sum(answers.values()),
        answers=answers,
        failures=dict(soak.failures),
        closes=dict(soak.closes),
        skipped=soak.skipped,
        errors={"5xx": fives, "failed": sum(soak.failures.values()), "feed": missed},
        server_log=log,
        feeds=feeds,
        samples=run["samples"],
    )
    result["passed"] = not (fives or soak.failures or missed or log["tracebacks"])
    print_summary(result)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    suffix = "-postgresql" if args.services else ""
    (out / f"soak-{result['date'][:10]}{suffix}.json").write_text(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
