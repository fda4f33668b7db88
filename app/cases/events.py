"""Typed events and the two ways they are written: the case timeline and the outbox.

Every change to a case appends one CaseEvent (its `id` is the feed cursor) and one outbox row
on the case-events topic, in the caller's unit of work (app/platform/uow.py), which writes both just
before it commits. Delivery is at-least-once; consumers are idempotent by `event_id`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import Row

from app.models import Case, CaseEvent
from app.platform import topics

if TYPE_CHECKING:
    from app.platform.uow import UnitOfWork


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
    # A resident's personal data removed (on request, or after the retention period): which
    # fields of which earlier events (app/privacy/erase.py, app/cases/audit.py)
    PERSONAL_DATA_ERASED = "PersonalDataErased"


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
    department: str | None = None  # the case's queue, if a department's
    cursor: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    trace: str | None = None  # the W3C traceparent of the request that wrote it, when traced


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


def enqueue(uow: UnitOfWork, topic: str, key: str, envelope: EventEnvelope) -> None:
    """Add an outbox row; it is published only if the surrounding transaction commits."""
    uow.add_outbox(outbox_row(topic, key, envelope))


@dataclass(slots=True)
class NewEvent:
    """A case event appended in this unit of work: numbered and sealed, written (and given its
    `id`, the feed cursor) when the unit of work flushes. The columns of `CaseEvent`, without
    the ORM's bookkeeping: a batch appends thousands."""

    event_id: str
    case_id: str
    seq: int
    type: str
    version: int
    occurred_at: datetime
    actor: str
    grid_code: str
    category: str
    department: str | None
    data: dict[str, Any]
    prev_hash: str | None = None
    hash: str | None = None
    commitments: dict[str, Any] | None = None  # the personal fields' (app/cases/audit.py)
    id: int | None = None


def append_case_event(
    uow: UnitOfWork,
    case: Case,
    type: EventType,
    *,
    actor: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> NewEvent:
    """Append the next event of `case` to its timeline and to the outbox: numbered and sealed
    now, written when the unit of work flushes."""
    case.seq += 1
    case.updated_at = now
    row = NewEvent(
        event_id=str(uuid.uuid4()),
        case_id=case.id,
        seq=case.seq,
        type=type.value,
        version=1,
        occurred_at=now,
        actor=actor,
        grid_code=case.grid_code,
        category=case.category,
        department=case.department,
        data=data or {},
    )
    uow.seal(case, row)
    uow.add_event(row)
    return row


def case_event_outbox_row(row: CaseEvent | NewEvent) -> dict[str, Any]:
    """The outbox row that publishes a written case event (its id is set)."""
    return outbox_row(topics.CASE_EVENTS, row.case_id, envelope_of(row))


def envelope_of(row: CaseEvent | NewEvent | Row[Any]) -> EventEnvelope:
    """The envelope of a stored event (an ORM object, an appended one or a plain row of
    `case_events`' columns), built without validation: the values are the table's own."""
    return EventEnvelope.model_construct(
        event_id=row.event_id,
        type=EventType(row.type),
        version=row.version,
        occurred_at=row.occurred_at,
        case_id=row.case_id,
        seq=row.seq,
        actor=row.actor,
        grid=row.grid_code,
        category=row.category,
        department=row.department,
        cursor=row.id,
        data=row.data,
    )
