"""The alert statement (app/intake/write.py), which exists on PostgreSQL only (SQLite takes the
unit-of-work path, covered by tests/app/test_alerts.py on both): runs in the services suite."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.intake.service import Location, NewReport, alert_submission, prepare_report
from app.intake.write import write_alert, write_submission
from tests.app.test_intake_write import _counts
from tests.harness import PG_ADMIN_URL, Harness


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if not PG_ADMIN_URL:
        pytest.fail("run through deploy/local/with-services.sh (make unit-services)")


async def test_the_alert_statement_checks_the_key_refuses_replays_and_repeats(h: Harness) -> None:
    db = h.runtime.db
    key_id = h.device("cam-001")["key_id"]
    centre = h.runtime.grids.require().units[0].geometry.representative_point()

    def rows(external_id: str) -> Any:
        return alert_submission(
            h.runtime.grids,
            h.runtime.clock,
            device_id="cam-001",
            external_id=external_id,
            category="fire_lane_blocked",
            location=Location(centre.y, centre.x),
            observed_at=h.runtime.clock.now(),
            confidence=0.9,
        )

    first = rows("evt-1")
    done = await write_alert(db, key_id, "a" * 64, first.report, first.outbox)
    assert (done.live, done.fresh, done.report_id) == (True, True, first.accepted.report_id)
    before = await _counts(h)
    replayed = await write_alert(db, key_id, "A" * 64, rows("evt-2").report, first.outbox)
    assert (replayed.live, replayed.fresh, replayed.report_id) == (True, False, None)
    repeat = await write_alert(db, key_id, "b" * 64, rows("evt-1").report, first.outbox)
    assert (repeat.live, repeat.fresh, repeat.report_id) == (True, True, None)
    unknown = await write_alert(db, "dk_nobody", "c" * 64, rows("evt-3").report, first.outbox)
    assert (unknown.live, unknown.fresh, unknown.report_id) == (False, False, None)
    assert await _counts(h) == before  # none of the three wrote a report or an outbox row


async def test_a_value_too_long_for_its_column_is_refused_not_cut(h: Harness) -> None:
    centre = h.runtime.grids.require().units[0].geometry.representative_point()
    sub = await prepare_report(
        h.runtime.db,
        h.runtime.grids,
        h.runtime.categories,
        h.runtime.clock,
        h.runtime.photos,
        # the column holds 128 characters
        NewReport("r" * 200, "garbage_overflow", "", Location(centre.y, centre.x)),
    )
    before = await _counts(h)
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await write_submission(h.runtime.db, sub.report, sub.photos, sub.outbox)
    assert await _counts(h) == before
