"""Pipeline benchmark (by hand, never in CI): resident reports over HTTP into PostgreSQL + Kafka.

    deploy/local/with-services.sh .venv/bin/python bench/pipeline.py [--load-seconds 30]

Measures, in one run on this machine (gridflow as `gridflow api` + one `gridflow dispatcher`):
  1. a bare FastAPI POST endpoint's req/s: the baseline, under wrk (Debian package `wrk`);
  2. intake→task-offered latency (task.offered_at − report.created_at, both written by the
     servers) at fixed offered rates (50/s and 200/s), open loop (bench/sender.py, which
     reports the rate it really sent), each on a settled pipeline;
  3. gridflow's accepted reports/s under the same wrk load as the baseline, for the same time,
     with the dispatcher stopped; then the dispatcher is started on that backlog and timed
     until every report has its case and offer;
  4. a sensor storm: signed alerts from 1,000 devices (20,000 in a minute by default), each
     device repeating what it sees: alerts/s sent and accepted, cases per device and category
     (one), and alert → ReportMerged latency;
  5. Apache Kafka's own produce→consume round trip with aiokafka at 200/s;
  6. the dispatcher's resident memory with the demo city, and with a synthetic city-scale
     grid set imported (50,000 unit grids by default).
`--profile DIR` also records the API (under wrk) and the dispatcher (on the backlog) with
py-spy, as collapsed stacks.
Prints a table and writes it as JSON next to this file (bench/results/). Every loop is bounded
in count and time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import sender  # noqa: E402

PY = sys.executable


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def run_wrk(port: int, token: str, seconds: float, connections: int) -> dict[str, float]:
    return wrk(port, "/v1/reports", "report.lua", {"BENCH_TOKEN": token}, seconds, connections)


def wrk(
    port: int, path: str, script: str, env: dict[str, str], seconds: float, connections: int
) -> dict[str, float]:
    """One wrk run of `bench/<script>` against 127.0.0.1:`port``path`: requests/s, count,
    non-2xx answers and p99 (ms). `env` reaches the script."""
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds:.0f}s",
            "--latency",
            "-s",
            str(REPO / "bench" / script),
            f"http://127.0.0.1:{port}{path}",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rps,
        "requests": done,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def token_for(env: dict[str, str], role: str, subject: str) -> str:
    return subprocess.run(
        [PY, "-m", "app.cli", "token", "issue", "--role", role, "--subject", subject],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()


def report_request(token: str, seed: int = 7) -> sender.Request:
    """Resident reports at random points of the demo city."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def build(_: int) -> tuple[str, dict[str, str], bytes]:
        body = {
            "category": "garbage_overflow",
            "location": {
                "lat": 30.231 + rng.random() * 0.068,
                "lon": 120.141 + rng.random() * 0.078,
            },
        }
        return "/v1/reports", headers, json.dumps(body).encode()

    return build


async def open_loop(port: int, token: str, rate: float, count: int) -> tuple[list[str], float]:
    """Send `count` reports at `rate`/s regardless of answers (open loop); return the ids of
    those accepted and the rate actually sent."""
    sent = await sender.send(port, report_request(token), rate=rate, count=count)
    ids = [
        json.loads(b)["id"] for st, b in zip(sent.statuses, sent.bodies, strict=True) if st == 201
    ]
    return ids, sent.rate


async def offer_latencies(dsn: str, ids: list[str], timeout: float = 180) -> list[float]:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                """SELECT r.id, extract(epoch FROM min(t.offered_at) - r.created_at) AS s
                   FROM reports r JOIN tasks t ON t.case_id = r.case_id
                   WHERE r.id = ANY($1::text[]) GROUP BY r.id, r.created_at""",
                ids,
            )
            if len(rows) == len(ids):
                return [float(r["s"]) * 1000 for r in rows]
            await asyncio.sleep(0.5)
        raise RuntimeError("not every report was offered in time")
    finally:
        await conn.close()


async def settle(dsn: str, timeout: float = 600) -> None:
    """Wait until every outbox row is published: no earlier work queued ahead of a phase."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
            if time.monotonic() > deadline:
                raise RuntimeError("the outbox did not drain")
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


async def unlimited_capacity(dsn: str) -> None:
    """Workers never accept the benchmark's offers, so each would fill up at `capacity` open
    tasks and later reports would wait for nobody: this measures the pipeline, not staffing."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE workers SET capacity = 1000000")
    finally:
        await conn.close()


async def drain(dsn: str, timeout: float = 600) -> float:
    """Seconds until every stored report has its case (and so its first offer)."""
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            if not await conn.fetchval("SELECT count(*) FROM reports WHERE case_id IS NULL"):
                return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise RuntimeError("the dispatcher did not drain the backlog in time")
    finally:
        await conn.close()


async def kafka_round_trip(bootstrap: str, rate: float, count: int) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-rtt-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1)])
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    samples: list[float] = []

    async def consume() -> None:
        while len(samples) < count:
            batch = await consumer.getmany(timeout_ms=500)
            now = time.monotonic()
            for records in batch.values():
                samples.extend((now - float(r.value)) * 1000 for r in records)

    reader = asyncio.create_task(consume())
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.send(topic, str(time.monotonic()).encode(), key=str(i % 12).encode())
    await asyncio.wait_for(reader, timeout=120)
    await producer.stop()
    await consumer.stop()
    await admin.delete_topics([topic])
    await admin.close()
    return samples


def start_dispatcher(env: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> Any:
    disp = subprocess.Popen(
        [PY, "-m", "app.cli", "dispatcher"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(disp)
    return disp


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def profile(out_dir: str | None, name: str, pid: int, seconds: int) -> Any:
    """py-spy (pip install py-spy) records `pid` for `seconds` into out_dir/name.txt
    (collapsed stacks), if asked."""
    if not out_dir:
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(Path(out_dir) / f"{name}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass
class StormDevice:
    device_id: str
    key_id: str
    secret: str
    category: str
    lon: float
    lat: float


async def make_devices(env: dict[str, str], db_url: str, n: int) -> list[StormDevice]:
    """`n` sensor devices with a key each, at fixed points of the demo city."""
    from app.devices.keys import add_key
    from app.models import Device
    from app.platform.db import Database
    from app.platform.settings import Settings

    names = ("GRIDFLOW_DATA_DIR", "GRIDFLOW_ENV")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: env[k] for k in names})
    try:
        master = Settings().device_master_key()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    rng = random.Random(11)
    db = Database(db_url)
    out = []
    now = datetime.now(UTC)
    try:
        async with db.transaction() as uow:
            for i in range(n):
                device_id = f"storm-{i:04d}"
                uow.session.add(Device(id=device_id, name=f"storm camera {i}", created_at=now))
                await uow.session.flush()
                key_id, secret = add_key(uow.session, device_id, master, now)
                category = "fire_lane_blocked" if i % 2 == 0 else "illegal_parking"
                lat, lon = 30.235 + rng.random() * 0.06, 120.145 + rng.random() * 0.07
                out.append(StormDevice(device_id, key_id, secret, category, lon, lat))
    finally:
        await db.dispose()
    return out


async def storm(dsn: str, devices: list[StormDevice], count: int, seconds: float) -> dict[str, Any]:
    """`count` signed alerts spread over `seconds`, round-robin over the devices: each device
    keeps seeing the same thing, so each should end with one case per category."""
    from app.devices.keys import sign

    def build(i: int) -> tuple[str, dict[str, str], bytes]:
        d = devices[i % len(devices)]
        body = json.dumps(
            {
                "external_id": f"storm-{i}",
                "category": d.category,
                "location": {"lat": d.lat, "lon": d.lon},
                "observed_at": datetime.now(UTC).isoformat(),
                "confidence": 0.9,
            }
        ).encode()
        stamp = str(int(time.time()))
        return (
            "/v1/alerts",
            {
                "Content-Type": "application/json",
                "X-Device-Key-Id": d.key_id,
                "X-Timestamp": stamp,
                "X-Signature": sign(d.secret, stamp, "POST", "/v1/alerts", body),
            },
            body,
        )

    sent = await sender.send(8302, build, rate=count / seconds, count=count, timeout_s=900)
    accepted = sum(1 for st in sent.statuses if st == 202)
    statuses = {str(st): sent.statuses.count(st) for st in sorted(set(sent.statuses))}
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        while await conn.fetchval(
            "SELECT count(*) FROM reports WHERE device_id LIKE 'storm-%' AND case_id IS NULL"
        ):
            if time.monotonic() - started > 600:
                raise RuntimeError("the storm's alerts were not all dispatched in time")
            await asyncio.sleep(0.25)
        drained_s = time.monotonic() - started
        cases = await conn.fetchval(
            "SELECT count(DISTINCT case_id) FROM reports WHERE device_id LIKE 'storm-%'"
        )
        per_device = await conn.fetchval(
            """SELECT max(n) FROM (SELECT count(DISTINCT case_id) AS n FROM reports
               WHERE device_id LIKE 'storm-%' GROUP BY device_id, category) AS c"""
        )
        merge = [
            float(r["s"]) * 1000
            for r in await conn.fetch(
                """SELECT extract(epoch FROM e.occurred_at - r.created_at) AS s
                   FROM case_events e JOIN reports r ON r.id = e.data->>'report_id'
                   WHERE e.type = 'ReportMerged' AND r.device_id LIKE 'storm-%'"""
            )
        ]
    finally:
        await conn.close()
    return {
        "devices": len(devices),
        "alerts": count,
        "asked_rate": count / seconds,
        "sent_rate": sent.rate,
        "accepted": accepted,
        "statuses": statuses,
        "cases": cases,
        "max_cases_per_device_and_category": per_device,
        "merged": len(merge),
        "merge_p50_ms": pct(merge, 50),
        "merge_p99_ms": pct(merge, 99),
        "drained_after_s": drained_s,
    }


async def memory_with_grids(
    env: dict[str, str], procs: list[subprocess.Popen[bytes]], cols_rows: str, data_dir: Path
) -> dict[str, Any]:
    """Import a synthetic city (`COLSxROWS` unit grids), start a dispatcher on it and read its
    resident memory once it has settled."""
    from geo.synthetic import synthetic_city

    cols, rows = (int(x) for x in cols_rows.split("x"))
    grids = synthetic_city(cols, rows)
    path = data_dir / "city.geojson"
    features = [g.to_feature() for g in grids]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    started = time.monotonic()
    subprocess.run(
        [PY, "-m", "app.cli", "grids", "import", str(path)],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    import_s = time.monotonic() - started
    disp = start_dispatcher(env, procs)
    samples: list[float] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        await asyncio.sleep(2)
        samples.append(rss_mb(disp.pid))
        if len(samples) >= 4 and max(samples[-4:]) - min(samples[-4:]) < 1:
            break
    stop(disp)
    units = sum(1 for g in grids if g.level.value == "unit")
    return {"unit_grids": units, "import_s": import_s, "dispatcher_rss_mb": samples[-1]}


def checkpoint(result: dict[str, Any]) -> None:
    """Each phase's numbers as soon as they are known: a later phase that fails loses none."""
    print(json.dumps({k: v for k, v in result.items() if k not in ("date", "machine")}), flush=True)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"pipeline-{result['date'][:10]}.partial.json").write_text(json.dumps(result, indent=2))


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=30.0,
        help="wrk run length for each of baseline and gridflow",
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument(
        "--low-rate",
        type=float,
        default=50.0,
        help="a second latency run, below the dispatcher's capacity",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="latency phase length")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers for both")
    parser.add_argument("--storm-devices", type=int, default=1000)
    parser.add_argument("--storm-alerts", type=int, default=20000)
    parser.add_argument("--storm-seconds", type=float, default=60.0)
    parser.add_argument(
        "--memory-grids",
        default="250x200",
        help="COLSxROWS unit grids for the memory phase ('' to skip)",
    )
    parser.add_argument("--profile", help="a folder for py-spy's collapsed stacks")
    args = parser.parse_args()
    pg_admin = os.environ.get("GRIDFLOW_TEST_PG_URL")
    kafka = os.environ.get("GRIDFLOW_TEST_KAFKA")
    if not (pg_admin and kafka and shutil.which("wrk")):
        print("run through deploy/local/with-services.sh, with wrk installed", file=sys.stderr)
        return 2
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = pg_admin.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    db_url = pg_admin.rsplit("/", 1)[0] + "/" + name
    dsn = db_url.replace("+asyncpg", "")
    data_dir = Path(f"/tmp/{name}")
    env = {
        **os.environ,
        "GRIDFLOW_DATA_DIR": str(data_dir),
        "GRIDFLOW_DB__URL": db_url,
        "GRIDFLOW_BUS__KIND": "kafka",
        "GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "GRIDFLOW_KAFKA__TOPIC_PREFIX": f"{name}.",
        "GRIDFLOW_ENV": "development",
        "GRIDFLOW_LIMITS__ENABLED": "false",  # a load test is one client sending a lot
    }
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "load_seconds": args.load_seconds,
        "connections": args.connections,
        "workers": args.workers,
    }
    try:
        token = token_for(env, "resident", "bench")
        # 1a. the baseline
        bare = subprocess.Popen(
            [
                PY,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--port",
                "8301",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
        )
        procs.append(bare)
        await wait_http("http://127.0.0.1:8301/docs")
        run_wrk(8301, token, 3, args.connections)  # warm-up
        result["bare"] = run_wrk(8301, token, args.load_seconds, args.connections)
        checkpoint(result)
        bare.terminate()
        bare.wait(30)
        # 1b. gridflow: API (no engine) and one dispatcher, on PostgreSQL and Kafka
        subprocess.run(
            [PY, "-m", "app.cli", "kafka", "init"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        api = subprocess.Popen(
            [PY, "-m", "app.cli", "api", "--port", "8302", "--workers", str(args.workers)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(api)
        await wait_http("http://127.0.0.1:8302/readyz", timeout=120)
        await unlimited_capacity(dsn)
        disp = start_dispatcher(env, procs)
        run_wrk(8302, token, 3, args.connections)  # warm-up
        await drain(dsn)
        # 2. intake → offered at fixed rates, each on a settled pipeline
        result["latency"] = []
        for rate in (args.low_rate, args.rate):
            await settle(dsn)
            count = int(rate * args.seconds)
            ids, achieved = await open_loop(8302, token, rate, count)
            lat = await offer_latencies(dsn, ids)
            result["latency"].append(
                {
                    "rate": rate,
                    "achieved_rate": achieved,
                    "reports": len(ids),
                    "p50_ms": pct(lat, 50),
                    "p99_ms": pct(lat, 99),
                    "mean_ms": statistics.fmean(lat),
                }
            )
            checkpoint(result)
        # 3. intake alone under wrk (the dispatcher, and with it the relay, stopped), then the
        #    dispatcher started on that backlog
        await settle(dsn)
        stop(disp)
        api_profiler = profile(args.profile, "api", api.pid, int(min(args.load_seconds, 20)))
        result["gridflow"] = run_wrk(8302, token, args.load_seconds, args.connections)
        if api_profiler is not None:
            api_profiler.wait(60)
        result["ratio"] = result["gridflow"]["rps"] / result["bare"]["rps"]
        accepted = result["gridflow"]["requests"] - result["gridflow"]["non_2xx"]
        result["accepted"] = accepted
        disp = start_dispatcher(env, procs)
        profiler = profile(args.profile, "dispatcher", disp.pid, 20)
        result["drain_s"] = await drain(dsn)
        result["backlog_per_s"] = accepted / result["drain_s"]
        checkpoint(result)
        if profiler is not None:
            profiler.wait(60)
        # 4. a sensor storm: signed alerts from many devices, each repeating what it sees
        await settle(dsn)
        devices = await make_devices(env, db_url, args.storm_devices)
        result["storm"] = await storm(dsn, devices, args.storm_alerts, args.storm_seconds)
        result["dispatcher_rss_mb"] = rss_mb(disp.pid)
        checkpoint(result)
        # 5. Kafka's own round trip at the same rate
        rtt = await kafka_round_trip(kafka, args.rate, int(args.rate * args.seconds))
        result["kafka_rtt"] = {"rate": args.rate, "p50_ms": pct(rtt, 50), "p99_ms": pct(rtt, 99)}
        # 6. the dispatcher's memory with a city-scale grid set live
        if args.memory_grids:
            stop(disp)
            result["memory"] = await memory_with_grids(env, procs, args.memory_grids, data_dir)
            checkpoint(result)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
        shutil.rmtree(data_dir, ignore_errors=True)

    b, g, k = result["bare"], result["gridflow"], result["kafka_rtt"]
    st = result["storm"]
    rows = [
        ("bare FastAPI POST (baseline)", f"{b['rps']:.0f} req/s", f"p99 {b['p99_ms']:.1f} ms"),
        (
            "gridflow POST /v1/reports (PG + outbox)",
            f"{g['rps']:.0f} reports/s",
            f"p99 {g['p99_ms']:.1f} ms; non-2xx {g['non_2xx']}; dispatcher stopped",
        ),
        ("  intake / baseline", f"{result['ratio'] * 100:.1f} %", "goal ≥ 30 %"),
        (
            "dispatcher: backlog to offered",
            f"{result['backlog_per_s']:.0f} reports/s",
            f"{accepted} reports offered {result['drain_s']:.1f} s after it started",
        ),
        (
            "  dispatcher / baseline",
            f"{result['backlog_per_s'] / b['rps'] * 100:.1f} %",
            "goal ≥ 20 %, stretch 40 %",
        ),
        *[
            (
                f"intake→offered at {lt['rate']:.0f}/s",
                f"p50 {lt['p50_ms']:.1f} ms",
                f"p99 {lt['p99_ms']:.1f} ms; sent {lt['achieved_rate']:.0f}/s",
            )
            for lt in result["latency"]
        ],
        (
            f"sensor storm: {st['alerts']} alerts, {st['devices']} devices",
            f"{st['sent_rate']:.0f} alerts/s",
            f"asked {st['asked_rate']:.0f}/s; accepted {st['accepted']}; {st['cases']} cases, "
            f"≤ {st['max_cases_per_device_and_category']} per device and category",
        ),
        (
            "  alert → merged into its case",
            f"p50 {st['merge_p50_ms']:.1f} ms",
            f"p99 {st['merge_p99_ms']:.1f} ms; all dispatched {st['drained_after_s']:.1f} s "
            "after the last was sent",
        ),
        ("dispatcher memory, demo city", f"{result['dispatcher_rss_mb']:.0f} MB", "RSS"),
        *(
            [
                (
                    f"dispatcher memory, {m['unit_grids']} unit grids",
                    f"{m['dispatcher_rss_mb']:.0f} MB",
                    f"RSS; the set imported in {m['import_s']:.0f} s",
                )
            ]
            if (m := result.get("memory"))
            else []
        ),
        (
            f"Kafka produce→consume at {k['rate']:.0f}/s",
            f"p50 {k['p50_ms']:.1f} ms",
            f"p99 {k['p99_ms']:.1f} ms",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\n{result['date']}  {result['machine']}  workers={args.workers} "
        f"connections={args.connections} load={args.load_seconds:.0f}s "
        f"accepted={accepted}"
    )
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:>16}  {note}")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"pipeline-{result['date'][:10]}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
