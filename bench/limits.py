"""Rate-limit benchmark (by hand, never in CI): what the shared buckets cost a request.

    GRIDFLOW_TEST_PG_URL=postgresql+asyncpg://gridflow@127.0.0.1:PORT/postgres \\
        .venv/bin/python bench/limits.py [--seconds 10] [--rounds 2]

(`deploy/local/with-services.sh .venv/bin/python bench/limits.py` sets the URL; Kafka is not
needed: `gridflow api` writes intake's outbox rows and nobody relays them.)

`gridflow api` (1 worker) on PostgreSQL, three of them at once, one for each rate-limit
setting: `limits.enabled=false` (no limits: the baseline), `limits.store=process` (the buckets
in the process) and `limits.store=database` (the shared buckets). Budgets are far above the
load, so nothing is refused: what is measured is the cost of asking. Under wrk (1 thread,
`--connections`), in this order, each phase warmed up, then `--cycles` runs of `--seconds` on
each server in turn (the order rotated every cycle):

  1. `POST /v1/tickets` by one caller from one address: no database work of its own, two
     takes (the address's, the principal's reads) on the same two rows: the worst case;
  2. `POST /v1/tickets` by `--callers` residents, each from an address of its own;
  3. `POST /v1/reports` by the same callers: intake (one statement) and two takes.

These machines are shared: other work moves requests/s from one run to the next, so each run
is compared with the baseline's run of the same cycle, and each run also records the CPU time
per request of the server process and of the PostgreSQL backends serving the bench's database
(read from /proc), which another process's load moves far less. Prints, per phase and
setting, the medians over the cycles; and what PostgreSQL counted on `rate_buckets` (rows
inserted, updated, of them in place (HOT), left) and the failed takes the database server
counted. Writes bench/results/limits-<date>.json. Every loop is bounded in count and time; all
traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.auth.tokens import Role, issue_token  # noqa: E402
from bench.pipeline import wrk  # noqa: E402

PY = sys.executable
SECRET = "bench-limits-secret-" + "x" * 40  # ≥ 32 characters; a throwaway database
UNLIMITED = json.dumps({"per_minute": 1e9, "burst": 1_000_000})
SETTINGS = ("off", "process", "database")
PHASES = (
    ("tickets, one caller", "/v1/tickets", "one"),
    ("tickets, many callers", "/v1/tickets", "many"),
    ("reports, many callers", "/v1/reports", "many"),
)


def callers_file(directory: Path, name: str, n: int) -> Path:
    now = datetime.now(UTC)
    path = directory / f"callers-{name}.txt"
    lines = []
    for i in range(n):
        token = issue_token(
            SECRET,
            role=Role.RESIDENT,
            subject=f"bench-{i}",
            issuer="gridflow",
            audience="gridflow",
            now=now,
            ttl_s=3600,
        )
        lines.append(f"{token} 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(
    port: int, path: str, callers: Path, seconds: float, connections: int
) -> dict[str, float]:
    env = {"BENCH_PATH": path, "BENCH_CALLERS": str(callers)}
    return wrk(port, path, "limits.lua", env, seconds, connections)


async def wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S


async def backends(dsn: str, database: str) -> list[int]:
    """The PostgreSQL backends serving `database` now (the servers' pools, kept open)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


async def no_backends(dsn: str, database: str) -> None:
    """Wait (bounded) until the stopped servers' backends have exited, and so reported what
    they counted."""
    for _ in range(100):
        if not await backends(dsn, database):
            return
        await asyncio.sleep(0.1)


async def bucket_stats(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd,
                      (SELECT count(*) FROM rate_buckets) AS rows
               FROM pg_stat_user_tables WHERE relname = 'rate_buckets'"""
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: int(row[k]) for k in ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "rows")}


async def store_failures(port: int) -> dict[str, float]:
    """The server's count of takes the shared store failed, by reason."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.findall(
        r'gridflow_rate_limit_store_failures_total\{reason="(\w+)"\} ([\d.e+]+)', text
    )
    return {reason: float(n) for reason, n in found}


def server_env(base: dict[str, str], setting: str) -> dict[str, str]:
    env = dict(base)
    if setting == "off":
        env["GRIDFLOW_LIMITS__ENABLED"] = "false"
    else:
        env["GRIDFLOW_LIMITS__ENABLED"] = "true"
        env["GRIDFLOW_LIMITS__STORE"] = setting
    return env


async def flood(
    base: dict[str, str], work: Path, caller: Path, dsn: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One address far over its budget (10 a second, a burst of 10) on a server with shared
    buckets: how many of its requests became writes to `rate_buckets`."""
    port, log = free_port(), work / "server-flood.log"
    env = {
        **server_env(base, "database"),
        "GRIDFLOW_LIMITS__PER_ADDRESS": json.dumps({"per_minute": 600, "burst": 10}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "app.cli", "api", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        before = await bucket_stats(dsn)
        measured = run_wrk(port, "/v1/tickets", caller, args.seconds, args.connections)
    finally:
        proc.terminate()
        proc.wait(60)
    await no_backends(dsn, dsn.rsplit("/", 1)[1])
    after = await bucket_stats(dsn)  # its backends have exited: their counts are in
    out_ = {
        **measured,
        "row_writes": (after["n_tup_ins"] - before["n_tup_ins"])
        + (after["n_tup_upd"] - before["n_tup_upd"]),
    }
    print(
        f"flood: {out_['requests']} requests from one address in {args.seconds:g} s "
        f"({out_['non_2xx']} refused), {out_['row_writes']} row writes to rate_buckets",
        flush=True,
    )
    return out_


def stop(servers: dict[str, tuple[subprocess.Popen[bytes], int, Path]]) -> None:
    for proc, _, _ in servers.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def free_port() -> int:
    with socket.socket() as sock:  # a port nobody else on this machine is using now
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per phase and setting: the median req/s and p99 over the cycles, and the median of
    each cycle's ratio to `off` in that cycle."""
    summary: dict[str, dict[str, Any]] = {}
    for phase, _, _ in PHASES:
        row: dict[str, Any] = {}
        off = {r["cycle"]: r["rps"] for r in runs if r["phase"] == phase and r["setting"] == "off"}
        for setting in SETTINGS:
            mine = [r for r in runs if r["phase"] == phase and r["setting"] == setting]
            row[setting] = {
                "rps": statistics.median(r["rps"] for r in mine),
                "p99_ms": statistics.median(r["p99_ms"] for r in mine),
                "non_2xx": sum(r["non_2xx"] for r in mine),
                "server_cpu_ms": statistics.median(r["server_cpu_ms"] for r in mine),
                "pg_cpu_ms": statistics.median(r["pg_cpu_ms"] for r in mine),
                "ratio_to_off": statistics.median(r["rps"] / off[r["cycle"]] for r in mine),
                "ratios": [round(r["rps"] / off[r["cycle"]], 3) for r in mine],
            }
        summary[phase] = row
    return summary


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="one wrk run's length")
    parser.add_argument("--cycles", type=int, default=5, help="runs of each setting per phase")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--callers", type=int, default=500)
    args = parser.parse_args()
    pg_admin = os.environ.get("GRIDFLOW_TEST_PG_URL")
    if not (pg_admin and shutil.which("wrk")):
        print("set GRIDFLOW_TEST_PG_URL (deploy/local/) and install wrk", file=sys.stderr)
        return 2
    name = f"bench_limits_{uuid.uuid4().hex[:8]}"
    admin_dsn = pg_admin.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    db_url = pg_admin.rsplit("/", 1)[0] + "/" + name
    dsn = db_url.replace("+asyncpg", "")
    work = Path(tempfile.mkdtemp(prefix=name))
    base = {
        **os.environ,
        "GRIDFLOW_ENV": "production",
        "GRIDFLOW_AUTH__SECRET": SECRET,
        "GRIDFLOW_DATA_DIR": str(work / "data"),
        "GRIDFLOW_DB__URL": db_url,
        "GRIDFLOW_BUS__KIND": "kafka",  # intake's one statement; nothing relays in this bench
        "GRIDFLOW_KAFKA_AUTO_CREATE_TOPICS": "false",
        "GRIDFLOW_LOG__LEVEL": "warning",
        "GRIDFLOW_LIMITS__TRUST_FORWARDED_FOR": "true",
        "GRIDFLOW_LIMITS__PER_ADDRESS": UNLIMITED,
        "GRIDFLOW_LIMITS__READS": UNLIMITED,
        "GRIDFLOW_LIMITS__REPORTS": UNLIMITED,
    }
    files = {"one": callers_file(work, "one", 1), "many": callers_file(work, "many", args.callers)}
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
        "seconds": args.seconds,
        "cycles": args.cycles,
        "connections": args.connections,
        "callers": args.callers,
        "runs": runs,
    }
    servers: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    try:
        for setting in SETTINGS:  # one after the other: the first migrates and seeds
            port, log = free_port(), work / f"server-{setting}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [PY, "-m", "app.cli", "api", "--port", str(port)],
                    cwd=REPO,
                    env=server_env(base, setting),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            servers[setting] = (proc, port, log)
            await wait_http(f"http://127.0.0.1:{port}/readyz")
            if proc.poll() is not None:
                raise RuntimeError(f"the {setting} server stopped; see {log}")
        before = await bucket_stats(dsn)
        for phase, path, who in PHASES:
            for setting in SETTINGS:  # warm-up, not counted
                run_wrk(servers[setting][1], path, files[who], 2, args.connections)
            for cycle in range(args.cycles):
                order = SETTINGS[cycle % 3 :] + SETTINGS[: cycle % 3]  # no setting always first
                for setting in order:
                    proc, port, _ = servers[setting]
                    pids = await backends(dsn, name)
                    server_before = cpu_s(proc.pid)
                    pg_before = {pid: cpu_s(pid) for pid in pids}
                    measured = run_wrk(port, path, files[who], args.seconds, args.connections)
                    server_used = cpu_s(proc.pid) - server_before
                    pg_used = sum(
                        cpu_s(pid) - pg_before.get(pid, 0.0) for pid in await backends(dsn, name)
                    )
                    n = max(1, measured["requests"])
                    measured["server_cpu_ms"] = 1000 * server_used / n
                    measured["pg_cpu_ms"] = 1000 * pg_used / n
                    runs.append({"cycle": cycle, "setting": setting, "phase": phase, **measured})
                    print(
                        f"{phase:24} cycle {cycle} {setting:8} {measured['rps']:7.0f} req/s"
                        f"  p99 {measured['p99_ms']:7.1f} ms  non-2xx {measured['non_2xx']}"
                        f"  CPU ms/request: server {measured['server_cpu_ms']:.2f}"
                        f" PostgreSQL {measured['pg_cpu_ms']:.2f}",
                        flush=True,
                    )
        result["store_failures"] = await store_failures(servers["database"][1])
        stop(servers)
        await no_backends(dsn, name)
        after = await bucket_stats(dsn)  # the servers' backends have exited: their counts are in
        result["rate_buckets"] = {
            **{k: after[k] - before[k] for k in ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd")},
            "rows": after["rows"],
        }
        result["flood"] = await flood(base, work, files["one"], dsn, args)
        result["load_average_at_end"] = os.getloadavg()
        summary = result["summary"] = summarise(runs)
        print()
        print(f"{'phase':24} " + " ".join(f"{s:>34}" for s in SETTINGS))
        for phase, row in summary.items():
            cells = [
                f"{row[s]['rps']:5.0f}/s {row[s]['ratio_to_off']:4.0%}"
                f" cpu {row[s]['server_cpu_ms']:.2f}+{row[s]['pg_cpu_ms']:.2f} ms"
                for s in SETTINGS
            ]
            print(f"{phase:24} " + " ".join(f"{c:>34}" for c in cells))
        print(
            "(req/s, its ratio to off in the same cycle, CPU ms per request: server + PostgreSQL)"
        )
        print(f"shared store failures: {result['store_failures']}")
        b = result["rate_buckets"]
        print(
            f"rate_buckets: {b['n_tup_ins']} inserted, {b['n_tup_upd']} updated "
            f"({b['n_tup_hot_upd']} in place), {b['rows']} rows at the end"
        )
    finally:
        stop(servers)
        for setting, (_, _, log) in servers.items():
            errors = [
                line
                for line in log.read_text().splitlines()
                # wrk drops its connections mid-request when it stops: not the server's error
                if '"error"' in line and "ClientDisconnect" not in line
            ]
            if errors:
                print(f"the {setting} server logged {len(errors)} errors; first: {errors[0]}")
        out = REPO / "bench" / "results" / f"limits-{datetime.now(UTC):%Y-%m-%d}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {out.relative_to(REPO)}")
        shutil.rmtree(work, ignore_errors=True)
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
    return 0


if __name__ == "__main__":
    # Stopped (`timeout`, ^C): stop the servers and drop the database on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(asyncio.run(main()))
