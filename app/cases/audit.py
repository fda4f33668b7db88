"""The tamper-evident case history.

Every case event carries `prev_hash` (the hash of the event before it in the same case, or
GENESIS) and `hash` = HMAC-SHA256 under the audit key over the previous hash and the event's
content; the case row keeps the newest hash as `head_hash`. So an edited event no longer matches
its hash, a deleted or inserted one breaks the links or the numbering, and a dropped last event
no longer matches the case's head. The key is not in the database: someone who can write the
tables but does not hold the key cannot forge a consistent chain.

A resident's personal data in an event (their id as the actor, a point they reported, what they
wrote: `personal_values`) enters the hash as a commitment instead of its content: each such
field gets a random salt of its own, and `commitments` keeps, beside the event, HMAC(key, salt,
field, value) and the salt. Erasing a field removes its value and its salt and keeps the
commitment, so the chain still verifies and nobody, even with the key, can tell what was there
(a field's own salt: one erased field's commitment cannot be tested against guesses with the
salt of another that is kept). An event without personal data has no commitments and hashes
its whole content, as every event did before commitments existed (migration 0017 resealed
the chains that verified then). Every erased field must be named by a later
`PersonalDataErased` event of its case, itself sealed: a field removed by someone without the
key shows as erased without a record.

`gridflow audit verify` walks every case and names each event at fault.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.events import EventType
from app.models import Case, CaseEvent
from geo import Progress, no_progress

if TYPE_CHECKING:
    from app.cases.events import NewEvent

GENESIS = "0" * 64
# Built once: json.dumps with options builds an encoder on every call, a good part of a seal.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
_VALUE = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode

# The keys of an event's data that hold what a resident gave: a point they reported and what
# they wrote. With a resident's own id as the actor, these are an event's personal values.
PERSONAL_KEYS = frozenset({"lat", "lon", "comment", "description", "address"})
RESIDENT_ACTOR = "resident:"
ERASED_ACTOR = "resident"  # a resident actor whose id was erased: the role is left


def personal_values(actor: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The event's personal values by field: `actor` when a resident acted, and the
    PERSONAL_KEYS its data holds."""
    values = {k: data[k] for k in PERSONAL_KEYS if k in data}
    if actor.startswith(RESIDENT_ACTOR):
        values["actor"] = actor
    return values


def commitment(key: bytes, salt: str, field: str, value: Any) -> str:
    """HMAC(key, salt, field, value): the salt is hex and the field a known name, so the unit
    separators between them are unambiguous; the value is JSON."""
    text = f"{salt}\x1f{field}\x1f{_VALUE(value)}"
    return hmac.digest(key, text.encode(), "sha256").hex()


def commit_personal(key: bytes, actor: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """{field: {"commitment", "salt"}} for the event's personal values, each with a fresh
    salt; None when it has none."""
    values = personal_values(actor, data)
    if not values:
        return None
    out: dict[str, Any] = {}
    for name in sorted(values):
        salt = os.urandom(16).hex()
        out[name] = {"commitment": commitment(key, salt, name, values[name]), "salt": salt}
    return out


def chain_hash(key: bytes, prev: str, event: CaseEvent | NewEvent) -> str:
    """The event's seal: its content, with each committed field's commitment in place of its
    value (so the seal outlives the value), linked to `prev`."""
    commitments: dict[str, Any] | None = event.commitments
    actor, data = event.actor, event.data
    content: list[Any] = [prev, event.event_id, event.case_id, event.seq, event.type]
    if commitments is not None:
        if "actor" in commitments:
            actor = ERASED_ACTOR
        data = {k: v for k, v in data.items() if k not in commitments}
    content += [
        event.version,
        event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        actor,
        event.grid_code,
        event.category,
        data,
    ]
    if commitments is not None:
        content.append({name: c.get("commitment") for name, c in commitments.items()})
    return hmac.digest(key, _CANONICAL(content).encode(), "sha256").hex()


def seal(key: bytes, prev: str, event: NewEvent) -> None:
    """Commit the event's personal values and link it after `prev` (its hash set)."""
    event.commitments = commit_personal(key, event.actor, event.data)
    event.prev_hash = prev
    event.hash = chain_hash(key, prev, event)


def personal_faults(key: bytes, event: CaseEvent) -> list[str]:
    """What is wrong with the event's committed fields: a value that does not match its
    commitment, a value missing with its salt kept, or a value where one was erased."""
    faults: list[str] = []
    for name, c in sorted((event.commitments or {}).items()):
        value: Any
        if name == "actor":
            present, value = event.actor != ERASED_ACTOR, event.actor
        else:
            present, value = name in event.data, event.data.get(name)
        salt = c.get("salt") if isinstance(c, dict) else None
        if salt is None:
            if present:
                faults.append(f"its erased field {name} holds a value")
        elif not present:
            faults.append(f"its field {name} is gone but was not erased (its salt is kept)")
        elif commitment(key, salt, name, value) != c.get("commitment"):
            faults.append(f"its field {name} does not match its commitment")
    return faults


def erased_fields(event: CaseEvent) -> list[str]:
    """The committed fields of the event whose value was erased."""
    return sorted(n for n, c in (event.commitments or {}).items() if "salt" not in c)


@dataclass(frozen=True)
class AuditProblem:
    case_id: str
    seq: int | None
    event_id: str | None
    # edited, broken_link, missing, inserted, head_mismatch, unsealed, erased_unrecorded
    kind: str
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
    erased: list[tuple[CaseEvent, str]] = []
    recorded: set[tuple[object, str]] = set()
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
        for fault in personal_faults(key, event):
            problem("edited", event, fault)
        if event.type == EventType.PERSONAL_DATA_ERASED:  # {"erased": [{seq, fields}]}
            for item in event.data.get("erased") or []:
                recorded.update((item.get("seq"), f) for f in item.get("fields") or [])
        erased.extend((event, f) for f in erased_fields(event))
        prev = event.hash
        expected_seq = event.seq + 1
    for event, name in erased:
        # The record comes after the erasure: a PersonalDataErased event names each field.
        if (event.seq, name) not in recorded:
            problem("erased_unrecorded", event, f"its field {name} was erased without a record")
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
