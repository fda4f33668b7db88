"""The log of staff reads of residents' personal data: who (role and id), when, which case,
what (a report, a case's timeline, a task, a photo, a report's live events).

Off the request's hot path: a read is recorded in memory (`AccessLog.record`, no I/O) and
written with the others of the last `privacy.access_log_flush_s` in one INSERT by a task of its
own. Never lost silently: a write that fails keeps its entries and is tried again; while more
than `privacy.access_log_backlog` wait (the database away), staff reads of personal data are
refused (503 `access_log_backlog`) instead of served unrecorded; on stopping the process writes
what is left, and whatever it still cannot write goes to the error log, one line an entry. A
process killed outright loses what it had not written yet: at most one flush interval's reads.

A resident's reads of their own data are not recorded; a read repeated by the same person, of
the same thing, within `privacy.access_log_repeat_s` is recorded once (a worker's app polls
its tasks every half minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table

from app.auth.tokens import Principal, Role
from app.models import AccessRecord
from app.platform.bulk import insert_rows
from app.platform.clock import Clock
from app.platform.db import Database
from app.platform.errors import ServiceUnavailable
from app.platform.settings import PrivacySettings
from app.platform.shutdown import cancel

log = logging.getLogger(__name__)
_TABLE = cast(Table, AccessRecord.__table__)
FLUSH_AT = 500  # entries waiting that wake the writer before its interval


class AccessLogBacklog(ServiceUnavailable):
    code = "access_log_backlog"


class AccessLog:
    def __init__(self, db: Database, clock: Clock, settings: PrivacySettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self._pending: list[dict[str, Any]] = []
        self._recent: dict[tuple[str | None, ...], datetime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self.written = 0  # entries written since start

    def record(
        self,
        who: Principal,
        what: str,
        *,
        case_id: str | None,
        report_id: str | None = None,
        ref: str | None = None,
    ) -> None:
        """Record that `who` read `what` of a case. Raises AccessLogBacklog (503) rather than
        let a read go unrecorded."""
        if who.role is Role.RESIDENT:
            return
        now = self.clock.now()
        key = (who.actor, what, case_id, report_id, ref)
        repeat_s = self.settings.access_log_repeat_s
        last = self._recent.get(key)
        if repeat_s and last is not None and (now - last).total_seconds() < repeat_s:
            return
        if len(self._pending) >= self.settings.access_log_backlog:
            raise AccessLogBacklog(
                "reads of personal data cannot be recorded right now; try again shortly"
            )
        self._pending.append(
            {
                "at": now,
                "role": who.role.value,
                "subject": who.subject,
                "case_id": case_id,
                "report_id": report_id,
                "what": what,
                "ref": ref,
            }
        )
        if repeat_s:
            self._recent[key] = now
            if len(self._recent) > 4 * self.settings.access_log_backlog:
                self._forget(now)
        if len(self._pending) >= FLUSH_AT:
            self._wake.set()

    def _forget(self, now: datetime) -> None:
        """Drop what is past the window; folding is best effort, so if that leaves too much,
        forget it all (a few reads are then recorded twice)."""
        repeat_s = self.settings.access_log_repeat_s
        recent = {k: t for k, t in self._recent.items() if (now - t).total_seconds() < repeat_s}
        self._recent = recent if len(recent) <= self.settings.access_log_backlog else {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what is waiting, in one transaction; on failure it waits again (in order) and
        the error is raised. How many were written."""
        async with self._flushing:
            rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                async with self.db.transaction() as uow:
                    await insert_rows(uow.session, _TABLE, rows)
            except BaseException:
                self._pending[:0] = rows
                raise
            self.written += len(rows)
            return len(rows)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gridflow-access-log")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.access_log_flush_s)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "could not write %d access log entries; will retry",
                    len(self._pending),
                    exc_info=True,
                )
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Stop the writer and write what is left; what cannot be written is logged."""
        task, self._task = self._task, None
        await cancel(task)
        try:
            await asyncio.wait_for(self.flush(), 5.0)
        except Exception:
            log.error("%d access log entries could not be written", len(self._pending))
            for row in self._pending:
                entry = {**row, "at": row["at"].isoformat()}
                log.error("access log entry not written: %s", json.dumps(entry))
            self._pending = []
