"""ORM models: every *_at column is aware UTC; no relationships, queries load what they need."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from app.cases.states import CaseStatus, PauseKind, ReportSource, TaskStatus, TimerKind, TimerState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL.

    SQLite has no time zone type: values are stored as naive UTC text, which sorts correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timezone-aware column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class State(TypeDecorator[E]):
    """A state from the vocabulary (app/cases/states.py), stored as its string. A value that is
    not a member is refused on the way in, so no stray spelling reaches the table."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum: type[E], length: int = 16) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: Json}  # noqa: RUF012


class GridSet(Base):
    __tablename__ = "grid_sets"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class GridRow(Base):
    __tablename__ = "grids"
    grid_set_version: Mapped[int] = mapped_column(ForeignKey("grid_sets.version"), primary_key=True)
    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    parent_code: Mapped[str | None] = mapped_column(String(20))
    geometry: Mapped[dict[str, Any]]
    responsible: Mapped[str | None] = mapped_column(String(200))


class Department(Base):
    """A department that owns categories (road damage: the roads department) and works them
    from its own queue; `responsible` is who escalations notify."""

    __tablename__ = "departments"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    responsible: Mapped[str | None] = mapped_column(String(200))


class Category(Base):
    __tablename__ = "categories"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer, default=3)
    department: Mapped[str | None] = mapped_column(ForeignKey("departments.code"))
    skill: Mapped[str | None] = mapped_column(String(64))  # workers with it rank first


class SlaPolicy(Base):
    """Clock goals for one category at one priority (0: any priority), in seconds of the
    policy's calendar from the case opening (accept: wall-clock seconds from the offer; verify:
    from the resolution). Every field is explained in docs/POLICIES.md."""

    __tablename__ = "sla_policies"
    category_code: Mapped[str] = mapped_column(ForeignKey("categories.code"), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="0")
    accept_s: Mapped[int] = mapped_column(Integer)
    on_site_s: Mapped[int] = mapped_column(Integer)
    close_s: Mapped[int] = mapped_column(Integer)
    # "24x7", or "working_hours" (counted only in working time: sla.calendar in the settings)
    calendar: Mapped[str] = mapped_column(String(16), default="24x7", server_default="24x7")
    verify_s: Mapped[int | None] = mapped_column(Integer)  # set: 核查 required before closing
    warn_at: Mapped[float | None] = mapped_column(Float)  # None: the settings' sla.warn_at
    max_refusals: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    escalation: Mapped[list[dict[str, Any]]] = mapped_column(
        Json, default=list, server_default="[]"
    )


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (CheckConstraint("open_tasks >= 0", name="open_tasks_not_negative"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    grid_code: Mapped[str] = mapped_column(String(20), index=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=True)
    lon: Mapped[float | None] = mapped_column(Float)  # the last reported location, WGS-84
    lat: Mapped[float | None] = mapped_column(Float)
    location_at: Mapped[datetime | None]  # when the server received it
    location_device_at: Mapped[datetime | None]  # when the phone says it was taken
    capacity: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    # Tasks offered, accepted or on site: taken and given back only by dispatch/workers.py
    # (`take_slot`, `give_back_slot`), so no two dispatchers can fill a worker's last slot twice.
    open_tasks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skills: Mapped[list[str]] = mapped_column(Json, default=list, server_default="[]")
    department: Mapped[str | None] = mapped_column(String(64), index=True)  # None: a grid worker
    created_at: Mapped[datetime]


class PolicyDocumentVersion(Base):
    """One row: the version of the stored policies and categories, raised by every change, so
    engines cache them until it moves (app/policies/document.py)."""

    __tablename__ = "policy_document"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class DeviceKey(Base):
    """A device's signing key: the id only; the secret is derived (app/devices/keys.py)."""

    __tablename__ = "device_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class SeenSignature(Base):
    """Signatures of device requests already received, to refuse replays within the window."""

    __tablename__ = "seen_signatures"
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40))
    seen_at: Mapped[datetime] = mapped_column(index=True)


class Report(Base):
    """One resident report or sensor alert, as received (coordinates kept as sent and as WGS-84).

    A resident's personal data here (who, what they wrote, where exactly) is removed on their
    request (`erased_at`) or after the retention period (`coarsened_at`: the location is then
    coarse, and everything else personal gone): app/privacy/."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("device_id", "external_id"),
        # The retention job's two scans: residents' reports not yet coarsened, oldest first, and
        # those erased on request whose case may have closed since.
        Index(
            "ix_reports_retention",
            "created_at",
            postgresql_where=text("coarsened_at IS NULL AND source = 'resident'"),
            sqlite_where=text("coarsened_at IS NULL AND source = 'resident'"),
        ),
        Index(
            "ix_reports_erased_pending",
            "erased_at",
            postgresql_where=text("erased_at IS NOT NULL AND coarsened_at IS NULL"),
            sqlite_where=text("erased_at IS NOT NULL AND coarsened_at IS NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[ReportSource] = mapped_column(State(ReportSource))
    reporter_id: Mapped[str | None] = mapped_column(String(128), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    external_id: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(ForeignKey("categories.code"))
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str | None] = mapped_column(String(500))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    crs: Mapped[str] = mapped_column(String(8))
    lon_in: Mapped[float] = mapped_column(Float)
    lat_in: Mapped[float] = mapped_column(Float)
    grid_code: Mapped[str] = mapped_column(String(20), index=True)
    grid_set_version: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    observed_at: Mapped[datetime | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]  # the resident asked for erasure
    coarsened_at: Mapped[datetime | None]  # location coarsened, nothing personal left


class Photo(Base):
    __tablename__ = "photos"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str | None] = mapped_column(ForeignKey("reports.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_device_open", "source_device_id", "category", "status"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    category: Mapped[str] = mapped_column(ForeignKey("categories.code"))
    grid_code: Mapped[str] = mapped_column(String(20), index=True)
    grid_set_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[CaseStatus] = mapped_column(State(CaseStatus), index=True)
    priority: Mapped[int] = mapped_column(Integer)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    source_device_id: Mapped[str | None] = mapped_column(String(64))
    assignee_worker_id: Mapped[str | None] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64), index=True)  # its queue, if any
    seq: Mapped[int] = mapped_column(Integer, default=0)
    paused_at: Mapped[datetime | None]  # the SLA clocks are stopped since (see dispatch/pauses.py)
    pause_kind: Mapped[PauseKind | None] = mapped_column(State(PauseKind, 32))
    head_hash: Mapped[str | None] = mapped_column(String(64))  # the newest event's hash
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class Task(Base):
    """One offer of a case to one worker, and what the worker did with it."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id"), index=True)
    status: Mapped[TaskStatus] = mapped_column(State(TaskStatus), index=True)
    offered_at: Mapped[datetime]
    accept_due_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    arrived_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)


class SlaTimer(Base):
    """A deadline as a row: armed until it fires once or is cancelled."""

    __tablename__ = "sla_timers"
    __table_args__ = (Index("ix_sla_timers_due", "state", "due_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id"))
    kind: Mapped[TimerKind] = mapped_column(State(TimerKind))
    due_at: Mapped[datetime]
    state: Mapped[TimerState] = mapped_column(State(TimerState), default=TimerState.ARMED)
    created_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]  # when it fired, or when it was cancelled
    paused_remaining_s: Mapped[float | None] = mapped_column(Float)  # calendar time left
    goal_s: Mapped[int | None] = mapped_column(Integer)  # a clock's goal when it was armed
    # An escalation step: its place in the policy's chain and its action, fixed when armed
    step: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str | None] = mapped_column(String(32))


class CaseEvent(Base):
    """The case timeline; `id` is the global feed cursor, `seq` the order within one case."""

    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer, default=1)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    grid_code: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))  # the case's queue: for scopes
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str | None] = mapped_column(String(64))  # see app/cases/audit.py
    hash: Mapped[str | None] = mapped_column(String(64))
    # The personal fields' commitments and salts, {field: {commitment, salt}}; an erased
    # field keeps its commitment only. None: the event holds no personal data.
    commitments: Mapped[dict[str, Any] | None]


class AuditCheckpoint(Base):
    """A signed statement of every case's chain head at one time (app/cases/checkpoints.py):
    the Merkle root of its leaves, the digest of the checkpoint before it, the faults found
    against that one. Rows are never deleted; only their leaves are, past a number kept."""

    __tablename__ = "audit_checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    taken_at: Mapped[datetime]
    cases: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(64))
    prev_digest: Mapped[str | None] = mapped_column(String(64))
    vanished: Mapped[int] = mapped_column(Integer)
    rolled_back: Mapped[int] = mapped_column(Integer)
    faults: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))


class AuditCheckpointLeaves(Base):
    """One chunk of a checkpoint's leaves, in case-id order, packed and compressed."""

    __tablename__ = "audit_checkpoint_leaves"
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("audit_checkpoints.id"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Feedback(Base):
    """A resident's verdict on one resolution of their report's case (a reopened case is
    resolved, and rated, again)."""

    __tablename__ = "feedback"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    satisfied: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class OutboxMessage(Base):
    """Events to publish, written in the same transaction as the change they describe.

    With the embedded bus this table is the log itself: consumers read it by `id`.
    """

    __tablename__ = "outbox"
    # sqlite_autoincrement: ids are never reused, even after the newest rows are pruned; the
    # embedded bus reads this table by id.
    __table_args__ = (
        Index("ix_outbox_topic_id", "topic", "id"),
        # the relay's scan: unsent rows in id order, never the sent ones kept for a day
        Index(
            "ix_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class ConsumerOffset(Base):
    __tablename__ = "consumer_offsets"
    group_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class ProcessedEvent(Base):
    """Event ids a consumer group has applied, so a redelivered message is a no-op."""

    __tablename__ = "processed_events"
    group_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    processed_at: Mapped[datetime]


class IdempotencyRecord(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed to its retries."""

    __tablename__ = "idempotency_keys"
    principal: Mapped[str] = mapped_column(String(160), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)  # 0 while the first request is in flight
    body: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(index=True)


class RateBucket(Base):
    """One rate-limit bucket shared by every API process (`limits.store=database`; unused on
    SQLite), kept as the time it is full again: a bucket of `burst` tokens at `per_minute` holds
    burst - (full_at - now) / (one token's time) tokens, and each token taken moves `full_at` one
    token's time on. Times are the database's. A row whose `full_at` has passed is a full bucket
    and may be deleted at any time. UNLOGGED on PostgreSQL: a crash forgets the buckets (every
    budget starts full again), and no write waits for the WAL."""

    __tablename__ = "rate_buckets"
    key: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)  # a digest of the key
    full_at: Mapped[datetime]
    taken: Mapped[int] = mapped_column(Integer)  # tokens the last take gave (of those asked)


class AccessRecord(Base):
    """A staff member's read of a resident's personal data (a report, a case's timeline, a
    task, a photo): who, when, which case, what (app/privacy/access.py)."""

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_case", "case_id", "id"),
        Index("ix_access_log_subject", "subject", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    role: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    # No foreign keys: the record outlives whatever it names
    case_id: Mapped[str | None] = mapped_column(String(36))
    report_id: Mapped[str | None] = mapped_column(String(36))
    what: Mapped[str] = mapped_column(String(16))  # report, case, task, photo, events
    ref: Mapped[str | None] = mapped_column(String(36))  # the photo's or task's id
