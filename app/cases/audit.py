"""The tamper-evident case history.

Every case event carries `prev_hash` (the hash of the event before it in the same case, or
GENESIS) and `hash` = HMAC-SHA256 under the audit key over the previous hash and the event's
content; the case row keeps the newest hash as `head_hash`. So an edited event no longer matches
its hash, a deleted or inserted one breaks the links or the numbering, and a dropped last event
no longer matches the case's head. The key is not in the database: someone who can write the
tables but does not hold the key cannot forge a consistent chain.

`gridflow audit verify` walks every case and names each event at fault.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Case, CaseEvent
from geo import Progress, no_progress

if TYPE_CHECKING:
    from app.cases.events import NewEvent

GENESIS = "0" * 64


def chain_hash(key: bytes, prev: str, event: CaseEvent | NewEvent) -> str:
    content = [
        prev,
        event.event_id,
        event.case_id,
        event.seq,
        event.type,
        event.version,
        event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        event.actor,
        event.grid_code,
        event.category,
        event.data,
    ]
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditProblem:
    case_id: str
    seq: int | None
    event_id: str | None
    kind: str  # edited, broken_link, missing, inserted, head_mismatch, unsealed
    message: str


@dataclass
class AuditResult:
    cases: int = 0
    events: int = 0
    problems: list[AuditProblem] = field(default_factory=list)


def check_case(key: bytes, case: Case, events: list[CaseEvent]) -> list[AuditProblem]:
    problems: list[AuditProblem] = []

    def problem(kind: str, event: CaseEvent | None, message: str) -> None:
        problems.append(
            AuditProblem(
                case.id,
                event.seq if event else None,
                event.event_id if event else None,
                kind,
                f"case {case.id}"
                + (f" event {event.seq} ({event.type})" if event else "")
                + f": {message}",
            )
        )

    prev = GENESIS
    expected_seq = 1
    for event in events:
        if event.hash is None or event.prev_hash is None:
            problem("unsealed", event, "carries no hash")
            prev = GENESIS
            expected_seq = event.seq + 1
            continue
        if event.seq > expected_seq:
            for missing in range(expected_seq, event.seq):
                problems.append(
                    AuditProblem(
                        case.id,
                        missing,
                        None,
                        "missing",
                        f"case {case.id} event {missing}: missing (deleted)",
                    )
                )
        if event.seq > case.seq:
            problem("inserted", event, f"is beyond the case's last event ({case.seq}): inserted")
        if event.prev_hash != prev:
            problem("broken_link", event, "does not follow the event before it in the chain")
        if chain_hash(key, event.prev_hash, event) != event.hash:
            problem("edited", event, "its content does not match its hash: edited")
        prev = event.hash
        expected_seq = event.seq + 1
    if expected_seq <= case.seq:
        for missing in range(expected_seq, case.seq + 1):
            problems.append(
                AuditProblem(
                    case.id, missing, None, "missing", f"case {case.id} event {missing}: missing"
                )
            )
    if events and case.head_hash != events[-1].hash:
        problem("head_mismatch", None, "the newest event is not the one the case was sealed with")
    return problems


async def _cases(session: AsyncSession, batch: int = 500) -> AsyncIterator[Case]:
    after = ""
    while True:
        rows = list(
            await session.scalars(
                select(Case).where(Case.id > after).order_by(Case.id).limit(batch)
            )
        )
        for case in rows:
            yield case
        if len(rows) < batch:
            return
        after = rows[-1].id


async def verify(
    session: AsyncSession, key: bytes, progress: Progress = no_progress
) -> AuditResult:
    """Check every case's chain; the result names every event at fault. `progress` hears
    "checking cases" every hundred cases."""
    result = AuditResult()
    total = await session.scalar(select(func.count()).select_from(Case)) or 0
    async for case in _cases(session):
        if result.cases % 100 == 0:
            progress("checking cases", result.cases, total)
        events = list(
            await session.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
            )
        )
        result.cases += 1
        result.events += len(events)
        result.problems += check_case(key, case, events)
    progress("checking cases", result.cases, max(total, result.cases))
    return result


def describe(result: AuditResult) -> dict[str, Any]:
    problems = result.problems
    return {
        "cases": result.cases,
        "events": result.events,
        "problems": [p.__dict__ for p in problems],
        "checked_at": datetime.now(UTC).isoformat(),
    }
