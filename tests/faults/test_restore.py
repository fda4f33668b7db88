"""Backup and restore, as docs/OPERATIONS.md ("Backup and restore") tells an operator to do it.

The system is dumped (`pg_dump --format=custom`) while work is pending: open cases whose offers
will expire, reports published to Kafka but not yet consumed, reports accepted but not yet
published. It then runs on past the dump (a dispatcher consumes and commits offsets in Kafka,
more reports come in) before its database is lost. The dump is restored into a fresh database,
`gridflow db upgrade` and deploy/postgres/after-restore.sql are run, `gridflow audit verify`
passes, and a dispatcher started on it picks up where the dump left off: every report in the
dump becomes exactly one case, the offers due fire once, and the history still verifies."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.cases.events import EventType
from app.cases.states import TaskStatus, TimerKind, TimerState
from app.models import Case, CaseEvent, OutboxMessage, ProcessedEvent, Report, SlaTimer, Task
from app.platform import topics
from app.platform.db import Database
from app.platform.relay import OutboxRelay
from tests.dispatch.test_escalation import policies, policy, put_policies
from tests.faults.conftest import REPO, Dispatcher, process_env
from tests.faults.test_faults import post_reports, wait_dispatched
from tests.harness import Harness, pg_admin, pg_url

ACCEPT_S = 20  # long enough to stay armed until the dump, short enough to fall due after it


def pg_tool(name: str) -> str:
    """A PostgreSQL client program: the newest Debian install (as deploy/local/postgres.sh
    finds the server), else the one on PATH."""
    installs = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()],
    )
    found = str(installs[-1]) if installs else shutil.which(name)
    assert found, f"{name} not found: install PostgreSQL's client programs"
    return found


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(REPO),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def gridflow(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run(sys.executable, "-m", "app.cli", *args, env=env)


async def audit(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    code, out, err = await gridflow(env, "audit", "verify", "--json")
    assert out, err
    return code, json.loads(out)


def copy_secrets(source: Path, target: Path) -> None:
    """The secrets to back up beside the dump; in development the audit and device keys are
    derived from the generated signing secret, <data_dir>/jwt-secret."""
    target.mkdir()
    shutil.copy2(source / "jwt-secret", target / "jwt-secret")


async def publish_outbox(api: Harness) -> None:
    """What a relay running ahead of the consumers does: publish every unsent outbox row."""
    relay = OutboxRelay(api.runtime.db, api.settings.kafka)
    try:
        while await relay.publish_batch():
            pass
    finally:
        await relay.stop()


async def armed_accept_timers(db: Database, report_ids: list[str]) -> dict[int, str]:
    """Armed accept timers of these reports' cases: timer id -> the offered task."""
    async with db.reader() as s:
        rows = await s.execute(
            select(SlaTimer.id, SlaTimer.task_id)
            .join(Report, Report.case_id == SlaTimer.case_id)
            .where(
                Report.id.in_(report_ids),
                SlaTimer.kind == TimerKind.ACCEPT,
                SlaTimer.state == TimerState.ARMED,
            )
        )
        return {timer_id: str(task_id) for timer_id, task_id in rows}


async def test_restore_into_a_fresh_database_verifies_and_resumes_dispatch(
    api: Harness, dispatchers: list[Dispatcher], tmp_path: Path
) -> None:
    doc = await policies(api)
    policy(doc, "garbage_overflow")["accept_s"] = ACCEPT_S
    assert (await put_policies(api, doc)).status_code == 200
    dispatcher = dispatchers[0]
    name = f"gf_restored_{uuid.uuid4().hex[:10]}"
    restored = Database(pg_url(name))
    data = tmp_path / "restored-data"
    env = process_env(api) | {
        "GRIDFLOW_DB__URL": pg_url(name),
        "GRIDFLOW_DATA_DIR": str(data),
        "GRIDFLOW_SLA__SWEEP_INTERVAL_S": "1",
    }
    again = Dispatcher(env, "dispatcher-on-the-restore")
    try:
        async with asyncio.timeout(150):
            await restore_and_resume(api, dispatcher, again, restored, name, env, tmp_path)
    finally:
        await again.close()
        await restored.dispose()
        await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def restore_and_resume(
    api: Harness,
    dispatcher: Dispatcher,
    again: Dispatcher,
    restored: Database,
    name: str,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    # Open cases with offers nobody answers: their accept timers are armed at the dump.
    await dispatcher.start()
    opened = await post_reports(api, 12, seed=31)
    await wait_dispatched(api, opened)
    assert await dispatcher.terminate() == len(opened)
    # With the dispatcher stopped: reports the relay published (consumed only after the dump),
    # and reports accepted and still in the outbox.
    published = await post_reports(api, 8, seed=32)
    await publish_outbox(api)
    unsent = await post_reports(api, 8, seed=33)
    timers = await armed_accept_timers(api.runtime.db, opened)
    assert len(timers) == len(opened)
    async with api.runtime.db.reader() as s:
        events_at_dump = await s.scalar(select(func.count()).select_from(CaseEvent))
        cursor_at_dump = await s.scalar(select(func.max(CaseEvent.id)))

    # Backup: the dump, taken while the API is serving; the secrets (here the development
    # secret the audit key is derived from).
    dump = tmp_path / "gridflow.dump"
    code, _, err = await run(
        pg_tool("pg_dump"), "--format=custom", f"--file={dump}", libpq(api.settings.database_url)
    )
    assert code == 0, err
    backup = tmp_path / "backup"
    copy_secrets(api.settings.data_dir, backup)

    # The system runs on: a dispatcher consumes what was published and commits its offsets in
    # Kafka; more reports are published that nobody consumes. Then the database is lost.
    await dispatcher.start()
    await wait_dispatched(api, published + unsent)
    assert await dispatcher.terminate() == len(published + unsent)
    lost = await post_reports(api, 4, seed=34)
    await publish_outbox(api)
    async with api.runtime.db.reader() as s:
        last_cursor = await s.scalar(select(func.max(CaseEvent.id)))

    # Restore: the secrets; a fresh database; pg_restore; gridflow db upgrade; after-restore.sql.
    copy_secrets(backup, Path(env["GRIDFLOW_DATA_DIR"]))
    await pg_admin(f"CREATE DATABASE {name} TEMPLATE template0")
    target = libpq(pg_url(name))
    code, _, err = await run(
        pg_tool("pg_restore"), "--no-owner", "--single-transaction", f"--dbname={target}", str(dump)
    )
    assert code == 0, err
    code, out, err = await gridflow(env, "db", "upgrade")
    assert code == 0 and "database at head" in out, err
    script = REPO / "deploy" / "postgres" / "after-restore.sql"
    code, out, err = await run(
        pg_tool("psql"),
        "--set=ON_ERROR_STOP=1",
        "--single-transaction",
        f"--dbname={target}",
        f"--file={script}",
    )
    assert code == 0, err
    # Published before the dump, consumed after it: Kafka would never deliver them again.
    assert f"UPDATE {len(published)}" in out, out

    # gridflow audit verify: intact, and only with the key that sealed the history.
    (code, report), (forged_code, forged) = await asyncio.gather(
        audit(env), audit(env | {"GRIDFLOW_AUTH__AUDIT_KEY": "k" * 40})
    )
    assert code == 0, report
    assert report["problems"] == []
    assert (report["cases"], report["events"]) == (len(opened), events_at_dump)
    assert forged_code == 1
    assert {p["kind"] for p in forged["problems"]} == {"edited"}
    assert await armed_accept_timers(restored, opened) == timers

    # A dispatcher on the restored database.
    await again.start()

    async def resumed() -> bool:
        async with restored.reader() as s:
            dispatched = await s.scalar(
                select(func.count()).select_from(Report).where(Report.case_id.is_not(None))
            )
            fired = await s.scalar(
                select(func.count())
                .select_from(SlaTimer)
                .where(SlaTimer.id.in_(timers), SlaTimer.state == TimerState.FIRED)
            )
            dead = await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.topic == topics.DEAD_LETTER)
            )
        return (dispatched, fired, dead) == (
            len(opened + published + unsent),
            len(timers),
            len(lost),
        )

    await api.eventually(resumed, timeout=60, what="dispatch resumed on the restored database")
    # Only what the restore left undispatched was delivered: nothing before it came again.
    assert await again.terminate() == len(published + unsent + lost)

    assert cursor_at_dump is not None and last_cursor is not None
    await check_restored(
        restored, opened, published + unsent, lost, timers, (cursor_at_dump, last_cursor)
    )
    code, report = await audit(env)
    assert code == 0, report
    assert report["cases"] == len(opened + published + unsent)


async def check_restored(
    db: Database,
    opened: list[str],
    dispatched: list[str],
    lost: list[str],
    timers: dict[int, str],
    cursors: tuple[int, int],
) -> None:
    async with db.reader() as s:
        reports = dict((await s.execute(select(Report.id, Report.case_id))).all())
        assert set(reports) == set(opened + dispatched), "the dump's reports, and only those"
        assert None not in reports.values()
        assert len(set(reports.values())) == len(reports), "each report is its own case"
        assert await s.scalar(select(func.count()).select_from(Case)) == len(reports)
        assert await s.scalar(select(func.count()).select_from(ProcessedEvent)) == len(reports)
        events = list(
            await s.execute(
                select(CaseEvent.id, CaseEvent.case_id, CaseEvent.seq, CaseEvent.type).order_by(
                    CaseEvent.id
                )
            )
        )
        opened_per_case = Counter(e.case_id for e in events if e.type == EventType.CASE_OPENED)
        assert opened_per_case == Counter(reports.values()), "one CaseOpened per case"
        seqs: dict[str, list[int]] = {}
        for e in events:
            seqs.setdefault(e.case_id, []).append(e.seq)
        assert all(q == list(range(1, len(q) + 1)) for q in seqs.values()), "whole timelines"
        # Cursors drawn after the restore are above every cursor the lost database handed out.
        at_dump, lost_last = cursors
        assert all(e.id <= at_dump or e.id > lost_last for e in events)
        assert any(e.id > lost_last for e in events)
        # Each offer due expired exactly once, on the restored database.
        expired = Counter(
            data["task_id"]
            for data in await s.scalars(
                select(CaseEvent.data).where(CaseEvent.type == EventType.TASK_EXPIRED)
            )
        )
        for task_id in timers.values():
            assert expired[task_id] == 1, task_id
            task = await s.get(Task, task_id)
            assert task is not None and task.status == TaskStatus.EXPIRED
        # The reports accepted after the dump whose messages were still in Kafka: each
        # dead-lettered (the restored database has no such report), the only trace of them.
        dead = await s.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.topic == topics.DEAD_LETTER)
        )
        assert sorted(p["data"]["original"]["data"]["report_id"] for p in dead) == sorted(lost)
