"""Staff reads of residents' personal data are logged (who, when, which case, what) and
queryable by admins; residents' reads of their own are not; nothing is lost silently."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from app.auth.tokens import Principal, Role
from app.platform.clock import ManualClock
from app.platform.db import Database
from app.platform.settings import PrivacySettings
from app.privacy.access import AccessLog, AccessLogBacklog
from tests.app.residents import PHOTO, file_report
from tests.conftest import Configured
from tests.harness import Harness

NO_FOLDING = {"access_log_repeat_s": 0}


async def entries(h: Harness, **query: Any) -> list[dict[str, Any]]:
    await h.runtime.access.flush()
    r = await h.client.get("/v1/admin/access-log", params=query, headers=h.auth("admin", "root"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def seen(items: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    return [(i["role"], i["subject"], i["what"], i["case_id"]) for i in items]


async def test_staff_reads_are_logged_and_residents_own_reads_are_not(
    configured: Configured,
) -> None:
    async with configured(privacy=NO_FOLDING) as h:
        report = await file_report(h, "resident-r", 0, description="井盖丢了", photo=PHOTO)
        case_id = report["case_id"]
        task = await h.offered_task(case_id)  # an operator's read of the case, by the harness
        resident = h.auth("resident", "resident-r")
        got = await h.client.get(f"/v1/reports/{report['id']}", headers=resident)
        photo_url = got.json()["photo_urls"][0]
        assert (await h.client.get(photo_url, headers=resident)).status_code == 200
        assert (await h.client.get("/v1/me/data", headers=resident)).status_code == 200
        assert [i for i in await entries(h) if i["role"] == "resident"] == []

        start = h.clock.now()
        h.clock.advance(60)
        operator, worker = h.auth("operator", "ops-7"), h.auth("worker", task["worker_id"])
        assert (await h.client.get(f"/v1/reports/{report['id']}", headers=operator)).is_success
        assert (await h.client.get(photo_url, headers=operator)).is_success
        assert (await h.client.get("/v1/tasks", headers=worker)).is_success
        assert (await h.client.get(photo_url, headers=worker)).is_success
        items = await entries(h, since=(start + timedelta(seconds=30)).isoformat())
        w = task["worker_id"]
        assert seen(items) == [
            ("operator", "ops-7", "report", case_id),
            ("operator", "ops-7", "photo", case_id),
            ("worker", w, "task", case_id),
            ("worker", w, "photo", case_id),
        ]
        assert items[1]["ref"] == photo_url.rsplit("/", 1)[1]
        assert items[2]["ref"] == task["id"] and items[0]["report_id"] == report["id"]
        assert all(i["at"] == "2026-01-05T08:01:00Z" for i in items)

        # Filters and pages
        assert seen(await entries(h, subject="ops-7")) == seen(items[:2])
        other = await file_report(h, "resident-s", 1, description="路灯不亮")
        await h.case(other["case_id"])
        assert {i["case_id"] for i in await entries(h, case=other["case_id"])} == {other["case_id"]}
        everything = await entries(h, limit=1000)
        first = await h.client.get(
            "/v1/admin/access-log", params={"limit": 2}, headers=h.auth("admin", "root")
        )
        page = first.json()
        assert [i["id"] for i in page["items"]] == [i["id"] for i in everything[:2]]
        second = await entries(h, after=page["next_after"], limit=2)
        assert [i["id"] for i in second] == [i["id"] for i in everything[2:4]]


async def test_a_repeated_read_is_recorded_once_within_the_window(h: Harness) -> None:
    report = await file_report(h, "resident-q", 0, description="噪音扰民")
    await h.case(report["case_id"])
    await h.case(report["case_id"])
    assert len(await entries(h, case=report["case_id"], subject="ops")) == 1
    h.clock.advance(h.settings.privacy.access_log_repeat_s)
    await h.case(report["case_id"])
    assert len(await entries(h, case=report["case_id"], subject="ops")) == 2


async def test_workers_and_operators_cannot_read_the_access_log(h: Harness) -> None:
    for role, subject in (("worker", "w-33010600100101-1"), ("operator", "ops"), ("resident", "r")):
        r = await h.client.get("/v1/admin/access-log", headers=h.auth(role, subject))
        assert r.status_code == 403, (role, r.text)
    r = await h.client.get(
        "/v1/admin/access-log",
        params={"since": "0001-01-01T00:00:00+14:00"},
        headers=h.auth("admin", "root"),
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_reads_are_kept_while_the_database_is_away_and_refused_past_the_backlog(
    tmp_path: Any,
) -> None:
    away = Database(f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db")
    log = AccessLog(away, ManualClock(), PrivacySettings(access_log_backlog=100))
    who = Principal(Role.OPERATOR, "ops")
    try:
        for n in range(100):
            log.record(who, "case", case_id=f"c{n}")
        with pytest.raises(OperationalError):
            await log.flush()
        assert log.pending == 100  # kept, in order, for the next try
        with pytest.raises(AccessLogBacklog):
            log.record(who, "case", case_id="one-too-many")
        log.record(Principal(Role.RESIDENT, "r"), "case", case_id="c0")  # never recorded
        assert log.pending == 100
    finally:
        await away.dispose()
