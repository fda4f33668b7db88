"""Typed events and the two ways they are written: the case timeline and the outbox.

Every change to a case appends one CaseEvent (its `id` is the feed cursor) and one outbox row
on the case-events topic, in the caller's transaction. Delivery is at-least-once; consumers are
idempotent by `event_id`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import topics
from app.core.audit import seal
from app.core.db import BEFORE_COMMIT, mark_outbox_written
from app.core.models import Case, CaseEvent, OutboxMessage

PENDING_EVENTS = "gridflow.pending_case_events"  # session.info: events awaiting their outbox rows


class EventType(StrEnum):
    REPORT_RECEIVED = "ReportReceived"
    CASE_OPENED = "CaseOpened"
    REPORT_MERGED = "ReportMerged"
    TASK_OFFERED = "TaskOffered"
    TASK_ACCEPTED = "TaskAccepted"
    TASK_DECLINED = "TaskDeclined"
    TASK_EXPIRED = "TaskExpired"
    DISPATCH_FAILED = "DispatchFailed"
    WORKER_ARRIVED = "WorkerArrived"
    CASE_RESOLVED = "CaseResolved"
    FEEDBACK_RECEIVED = "FeedbackReceived"
    CASE_REOPENED = "CaseReopened"
    CASE_CLOSED = "CaseClosed"
    TASK_RETURNED = "TaskReturned"
    SLA_PAUSED = "SlaPaused"
    SLA_RESUMED = "SlaResumed"
    SLA_WARNING = "SlaWarning"
    SLA_BREACHED = "SlaBreached"
    CASE_ESCALATED = "CaseEscalated"
    VERIFICATION_PASSED = "VerificationPassed"
    CASE_REWORKED = "CaseReworked"  # 返工: the inspector sent the work back


class EventEnvelope(BaseModel):
    """What travels on the bus. `cursor` is set for case events (the case_events row id)."""

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: EventType
    version: int = 1
    occurred_at: datetime
    case_id: str | None = None
    seq: int | None = None
    actor: str
    grid: str | None = None
    category: str | None = None
    cursor: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ReportReceivedData(BaseModel):
    report_id: str
    source: str
    category: str
    grid: str
    device_id: str | None = None


def outbox_row(topic: str, key: str, envelope: EventEnvelope) -> dict[str, Any]:
    """The column values of an outbox row carrying `envelope`."""
    return {
        "topic": topic,
        "key": key,
        "payload": envelope.model_dump(mode="json"),
        "created_at": envelope.occurred_at,
    }


def enqueue(session: AsyncSession, topic: str, key: str, envelope: EventEnvelope) -> None:
    """Add an outbox row; it is published only if the surrounding transaction commits."""
    session.add(OutboxMessage(**outbox_row(topic, key, envelope)))
    mark_outbox_written(session)


async def append_case_event(
    session: AsyncSession,
    case: Case,
    type: EventType,
    *,
    actor: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> CaseEvent:
    """Append the next event of `case` to its timeline and to the outbox."""
    case.seq += 1
    case.updated_at = now
    row = CaseEvent(
        event_id=str(uuid.uuid4()),
        case_id=case.id,
        seq=case.seq,
        type=type.value,
        version=1,
        occurred_at=now,
        actor=actor,
        grid_code=case.grid_code,
        category=case.category,
        data=data or {},
    )
    seal(session, case, row)
    session.add(row)
    pending: list[CaseEvent] | None = session.info.get(PENDING_EVENTS)
    if pending is None:
        pending = session.info[PENDING_EVENTS] = []
        session.info.setdefault(BEFORE_COMMIT, []).append(write_pending_outbox)
    pending.append(row)
    mark_outbox_written(session)
    return row


async def write_pending_outbox(session: AsyncSession) -> None:
    """Run by the unit of work before it commits: one flush gives every case event of the
    transaction its id (the feed cursor), then their outbox rows are added in one go, instead
    of a flush per event."""
    pending: list[CaseEvent] = session.info.pop(PENDING_EVENTS, [])
    if not pending:
        return
    await session.flush()
    session.add_all(
        OutboxMessage(**outbox_row(topics.CASE_EVENTS, row.case_id, envelope_of(row)))
        for row in pending
    )


def envelope_of(row: CaseEvent) -> EventEnvelope:
    return EventEnvelope(
        event_id=row.event_id,
        type=EventType(row.type),
        version=row.version,
        occurred_at=row.occurred_at,
        case_id=row.case_id,
        seq=row.seq,
        actor=row.actor,
        grid=row.grid_code,
        category=row.category,
        cursor=row.id,
        data=row.data,
    )
