"""The soak's gridflow (bench/soak.py): its processes, its database, what its logs say."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
# Limits stay on (their buckets are part of what a soak watches), sized for one address
# sending everything: the per-principal budgets are the defaults.
PER_ADDRESS = json.dumps({"per_minute": 1_000_000, "burst": 100_000})


class Server:
    def __init__(self, tmp: Path, port: int, secret: str, *, services: bool) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.port = port
        self.services = services
        self.env = {
            **os.environ,
            "GRIDFLOW_ENV": "development",
            "GRIDFLOW_DATA_DIR": str(self.data),
            "GRIDFLOW_AUTH__SECRET": secret,
            "GRIDFLOW_LIMITS__PER_ADDRESS": PER_ADDRESS,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._files: list[IO[bytes]] = []
        self.database = ""  # PostgreSQL: the soak's own database
        self.admin_dsn = ""
        self.pg: asyncpg.Connection | None = None

    async def start(self) -> None:
        if not self.services:
            self._spawn("server", "serve", "--port", str(self.port))
            return
        pg_admin = os.environ.get("GRIDFLOW_TEST_PG_URL")
        kafka = os.environ.get("GRIDFLOW_TEST_KAFKA")
        if not (pg_admin and kafka):
            raise SystemExit("--services: run through deploy/local/with-services.sh")
        self.database = f"soak_{uuid.uuid4().hex[:8]}"
        self.admin_dsn = pg_admin.replace("+asyncpg", "")
        conn = await asyncpg.connect(self.admin_dsn)
        await conn.execute(f"CREATE DATABASE {self.database}")
        await conn.close()
        url = pg_admin.rsplit("/", 1)[0] + "/" + self.database
        self.env |= {
            "GRIDFLOW_DB__URL": url,
            "GRIDFLOW_BUS__KIND": "kafka",
            "GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS": kafka,
            "GRIDFLOW_KAFKA__TOPIC_PREFIX": f"{self.database}.",
        }
        subprocess.run(
            [sys.executable, "-m", "app.cli", "kafka", "init"],
            env=self.env,
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._spawn("api", "api", "--port", str(self.port), "--workers", "1")
        await self._wait_log("api", "Application startup complete")
        self._spawn("dispatcher", "dispatcher")
        await self._wait_log("dispatcher", "dispatcher: running")
        self.pg = await asyncpg.connect(url.replace("+asyncpg", ""))

    def _spawn(self, name: str, *args: str) -> None:
        self.logs[name] = self.tmp / f"{name}.log"
        out = self.logs[name].open("wb")
        self._files.append(out)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    async def _wait_log(self, name: str, line: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.logs[name].read_text(errors="replace"):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.logs[name].read_text()[-3000:]}")
            await asyncio.sleep(0.2)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    async def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.pg is not None:
            return [tuple(r) for r in await self.pg.fetch(sql)]

        def read() -> list[tuple[Any, ...]]:
            db = self.data / "gridflow.db"
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                return list(conn.execute(sql))

        return await asyncio.to_thread(read)

    async def newest_event(self) -> int:
        rows = await self._rows("SELECT coalesce(max(id), 0) FROM case_events")
        return int(rows[0][0])

    async def sessions(self) -> dict[str, int]:
        """PostgreSQL: the soak database's sessions by what they are doing or waiting for."""
        if self.pg is None:
            return {}
        rows = await self.pg.fetch(
            """SELECT coalesce(state, 'none')
                      || coalesce(' (' || wait_event_type || ':' || wait_event || ')', '') AS what,
                      count(*) AS n
               FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
               GROUP BY 1""",
            self.database,
        )
        return {str(r["what"]): int(r["n"]) for r in rows}

    async def events(self) -> list[tuple[int, str]]:
        rows = await self._rows("SELECT id, case_id FROM case_events ORDER BY id")
        return [(int(i), str(c)) for i, c in rows]

    async def stop(self) -> dict[str, Any]:
        """Stop the processes (bounded), clean up, and say what their logs hold."""
        if self.pg is not None:
            await self.pg.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for f in self._files:
            f.close()
        if self.database:
            conn = await asyncpg.connect(self.admin_dsn)
            await conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            await conn.close()
            from app.platform.kafka_bus import delete_topics
            from app.platform.settings import KafkaSettings

            kafka = KafkaSettings(
                bootstrap_servers=self.env["GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS"],
                topic_prefix=self.env["GRIDFLOW_KAFKA__TOPIC_PREFIX"],
            )
            with contextlib.suppress(Exception):
                await delete_topics(kafka)
        kept = Path(tempfile.mkdtemp(prefix="gridflow-soak-logs-"))
        for path in self.logs.values():
            shutil.copy2(path, kept / path.name)
        return {"kept_in": str(kept), **read_logs(self.logs)}


_STAMP = re.compile(r"^[\d-]+ [\d:,]+ ")


def read_logs(logs: dict[str, Path]) -> dict[str, Any]:
    """Tracebacks, errors and warnings in the server logs (the access log aside): gridflow's
    JSON lines (a traceback rides in `exc`), and plain lines from before its logging starts."""
    tracebacks = 0
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for name, path in logs.items():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    record = {}
                level = str(record.get("level", "")).upper()
                text = f"{level} {record.get('logger', '')} {record.get('message', '')}"[:160]
                tracebacks += "exc" in record
            else:
                tracebacks += line.startswith("Traceback (most recent call last)")
                text = _STAMP.sub("", line)[:160]
                level = text.split(":", 1)[0].split(" ", 1)[0]
            if level == "ERROR":
                errors[f"{name}: {text}"] += 1
            elif level == "WARNING":
                warnings[f"{name}: {text}"] += 1
    return {
        "tracebacks": tracebacks,
        "error_lines": sum(errors.values()),
        "warning_lines": sum(warnings.values()),
        "errors": errors.most_common(10),
        "warnings": warnings.most_common(10),
    }
