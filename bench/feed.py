"""Live-feed benchmark (by hand, never in CI): does the feed scale with followers?

    .venv/bin/python bench/feed.py [--followers 10000] [--rate 10] [--seconds 60]

On the embedded default (`gridflow serve`: SQLite, the in-process bus and the engine in one
process), an operator's WebSocket feed measures report → TaskOffered latency (the report's
`created_at`, written by the server, to the moment the TaskOffered event of its case reaches
the operator) for resident reports sent at a fixed rate (open loop). Three runs: with no
followers, with `--followers` residents each following their own report over SSE (real
connections to the server, opened before the run, kept open with its keep-alives), and with
none again; the ratio is the followers' p99 over the mean of the two runs without.
Prints a table and writes it as JSON to bench/results/. Every loop is bounded in count and
time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.auth.tokens import Role, issue_token  # noqa: E402
from bench import sender  # noqa: E402
from bench.pipeline import pct, report_request, wait_http  # noqa: E402

PORT = 8311


def token(secret: str, role: Role, subject: str) -> str:
    return issue_token(
        secret,
        role=role,
        subject=subject,
        issuer="gridflow",
        audience="gridflow",
        now=datetime.now(UTC),
        ttl_s=6 * 3600,
    )


class Operator:
    """The operations feed, live: when each case's TaskOffered event arrived."""

    def __init__(self, secret: str) -> None:
        self.url = f"ws://127.0.0.1:{PORT}/v1/feed"
        self.headers = {"Authorization": f"Bearer {token(secret, Role.OPERATOR, 'ops')}"}
        self.case_of_report: dict[str, str] = {}
        self.offered_at: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        async with websockets.connect(
            self.url, additional_headers=self.headers, max_size=None
        ) as ws:
            self.connected.set()
            async for raw in ws:
                now = time.time()
                event = json.loads(raw)
                if event["type"] == "CaseOpened":
                    self.case_of_report[event["data"]["report_id"]] = event["case_id"]
                elif event["type"] == "TaskOffered":
                    self.offered_at.setdefault(event["case_id"], now)


class Followers:
    """Residents following their own reports over SSE, reading whatever the server sends."""

    def __init__(self, bearer: str, report_ids: list[str]) -> None:
        self.bearer = bearer
        self.report_ids = report_ids
        self.open = 0
        self.received = 0
        self.failed = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout_s: float = 300) -> None:
        gate = asyncio.Semaphore(100)
        ready: list[asyncio.Event] = []
        for report_id in self.report_ids:
            event = asyncio.Event()
            ready.append(event)
            self._tasks.append(asyncio.create_task(self._follow(report_id, gate, event)))
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(e.wait() for e in ready))

    async def _follow(self, report_id: str, gate: asyncio.Semaphore, ready: asyncio.Event) -> None:
        try:
            async with gate:
                reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
                writer.write(
                    (
                        f"GET /v1/reports/{report_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {self.bearer}\r\nAccept: text/event-stream\r\n\r\n"
                    ).encode()
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head[:80].decode(errors="replace"))
                await reader.readuntil(b"retry: 3000")
            self.open += 1
            ready.set()
            while chunk := await reader.read(65536):
                self.received += len(chunk)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed += 1
            ready.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def follow(bearer: str, report_ids: list[str]) -> int:
    """The followers' process: open every stream, say so, hold them until stdin closes."""
    followers = Followers(bearer, report_ids)
    await followers.start()
    print(json.dumps({"open": followers.open, "failed": followers.failed}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await followers.stop()
    print(json.dumps({"received": followers.received}), flush=True)
    return 0


def created_at(db: Path, ids: list[str]) -> dict[str, float]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        out: dict[str, float] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for rid, at in conn.execute(
                f"SELECT id, created_at FROM reports WHERE id IN ({marks})", part
            ):
                moment = datetime.fromisoformat(at)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                out[rid] = moment.timestamp()
        return out


async def full_collections() -> tuple[float, float, float]:
    """The server's full garbage collections so far: how many, their seconds in all, and how
    many took over a quarter of a second (its `gridflow_gc_pause_seconds`)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{PORT}/metrics")).text
    got: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("generation") != "2":
                continue
            if sample.name.endswith("_count"):
                got["count"] = sample.value
            elif sample.name.endswith("_sum"):
                got["sum"] = sample.value
            elif sample.name.endswith("_bucket") and sample.labels.get("le") == "0.25":
                got["short"] = sample.value
    count = got.get("count", 0.0)
    return count, got.get("sum", 0.0), count - got.get("short", 0.0)


async def measure(
    op: Operator, resident: str, db: Path, rate: float, seconds: float, seed: int
) -> dict[str, float]:
    count = int(rate * seconds)
    gc_before = await full_collections()
    sent = await sender.send(PORT, report_request(resident, seed), rate=rate, count=count)
    answers = zip(sent.statuses, sent.bodies, strict=True)
    ids = [json.loads(b)["id"] for st, b in answers if st == 201]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cases = [op.case_of_report.get(i) for i in ids]
        if all(c is not None and c in op.offered_at for c in cases):
            break
        await asyncio.sleep(0.2)
    gc_after = await full_collections()
    created = created_at(db, ids)
    latencies = []
    for rid in ids:
        case_id = op.case_of_report.get(rid)
        if case_id is not None and case_id in op.offered_at:
            latencies.append((op.offered_at[case_id] - created[rid]) * 1000)
    return {
        "sent_rate": sent.rate,
        "reports": len(ids),
        "seen": len(latencies),
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "full_collections": gc_after[0] - gc_before[0],
        "full_collection_s": round(gc_after[1] - gc_before[1], 3),
        "full_collections_over_250ms": gc_after[2] - gc_before[2],
    }


def unlimited_capacity(db: Path) -> None:
    """Every worker takes any number of tasks: the followers' reports fill no slot."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        conn.execute("UPDATE workers SET capacity = 1000000")
        conn.commit()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="the server on CPython's own collector policy (GRIDFLOW_GC_FREEZE=false)",
    )
    parser.add_argument("--follow", help=argparse.SUPPRESS)  # the followers' own process
    parser.add_argument("--bearer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        return await follow(args.bearer, json.loads(Path(args.follow).read_text()))
    secret = secrets.token_urlsafe(48)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "followers": args.followers,
        "rate": args.rate,
        "seconds": args.seconds,
        "gc_freeze": not args.no_gc_freeze,
    }
    with tempfile.TemporaryDirectory(prefix="gridflow-feed-bench-") as tmp:
        data = Path(tmp)
        env = {
            **os.environ,
            "GRIDFLOW_DATA_DIR": str(data),
            "GRIDFLOW_AUTH__SECRET": secret,
            "GRIDFLOW_LIMITS__ENABLED": "false",
            "GRIDFLOW_GC_FREEZE": "false" if args.no_gc_freeze else "true",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(PORT)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_http(f"http://127.0.0.1:{PORT}/readyz", timeout=120)
            db = data / "gridflow.db"
            unlimited_capacity(db)
            op = Operator(secret)
            op.task = asyncio.create_task(op.run())
            await asyncio.wait_for(op.connected.wait(), timeout=30)
            measured = token(secret, Role.RESIDENT, "measured")
            await measure(op, measured, db, args.rate, 5, seed=1)  # warm-up
            # The followers' reports first, so that every run has the same cases stored
            follower = token(secret, Role.RESIDENT, "follower")
            started = time.monotonic()
            sent = await sender.send(
                PORT, report_request(follower, 3), rate=400, count=args.followers
            )
            answers = zip(sent.statuses, sent.bodies, strict=True)
            own = [json.loads(b)["id"] for st, b in answers if st == 201]
            result["follower_reports"] = len(own)
            await asyncio.sleep(30)  # dispatched, and the engine quiet again
            runs: dict[str, dict[str, float]] = {}
            runs["none"] = await measure(op, measured, db, args.rate, args.seconds, seed=2)
            print("no followers:", runs["none"], flush=True)
            # the followers are other people's phones: a process of their own, so that
            # reading their streams does not slow the operator's client measuring here
            ids_file = data / "followers.json"
            ids_file.write_text(json.dumps(own))
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "--follow",
                str(ids_file),
                "--bearer",
                follower,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert child.stdout is not None and child.stdin is not None
            opened = json.loads(await asyncio.wait_for(child.stdout.readline(), timeout=600))
            result["followers_open"] = opened["open"]
            result["followers_failed"] = opened["failed"]
            result["followers_setup_s"] = time.monotonic() - started
            print(f"{opened['open']} followers open ({opened['failed']} failed)", flush=True)
            await asyncio.sleep(10)  # their replays sent
            runs["followers"] = await measure(op, measured, db, args.rate, args.seconds, seed=4)
            print("with followers:", runs["followers"], flush=True)
            child.stdin.close()  # the followers hang up
            closed = json.loads(await asyncio.wait_for(child.stdout.readline(), timeout=60))
            result["followers_bytes"] = closed["received"]
            await child.wait()
            await asyncio.sleep(15)
            runs["none_again"] = await measure(op, measured, db, args.rate, args.seconds, seed=5)
            print("no followers again:", runs["none_again"], flush=True)
            op.task.cancel()
            result["runs"] = runs
            without = (runs["none"]["p99_ms"] + runs["none_again"]["p99_ms"]) / 2
            result["p99_ratio"] = runs["followers"]["p99_ms"] / without
            p50 = (runs["none"]["p50_ms"] + runs["none_again"]["p50_ms"]) / 2
            result["p50_ratio"] = runs["followers"]["p50_ms"] / p50
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(30)
            if server.poll() is None:
                server.kill()
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    policy = "" if result["gc_freeze"] else "-no-gc-freeze"
    (out / f"feed-{result['date'][:10]}{policy}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
