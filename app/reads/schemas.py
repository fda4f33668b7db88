"""What the read models answer with: the shapes of cases, tasks, reports and workers as the
API shows them (app/http re-exports them for its routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class GridPathItem(BaseModel):
    code: str
    name: str
    level: str


class GridRead(BaseModel):
    code: str
    name: str
    path: list[GridPathItem]


class TimelineEntry(BaseModel):
    cursor: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class Deadlines(BaseModel):
    accept_due_at: datetime | None = None
    on_site_due_at: datetime | None = None
    close_due_at: datetime | None = None


class ClockState(BaseModel):
    """One SLA clock of a case, as a service desk shows it."""

    clock: Literal["accept", "on_site", "close", "verify"]
    calendar: str = Field(description="24x7, or working_hours (only working time counts)")
    goal_s: int
    due_at: datetime
    elapsed_s: float = Field(description="time counted so far (in the calendar)")
    remaining_s: float = Field(description="time left before due; negative once overdue")
    state: Literal["running", "paused", "met", "breached"]
    paused: bool
    breached: bool


class Assignee(BaseModel):
    display_name: str


class ReportRead(BaseModel):
    id: str
    status: str
    category: str
    description: str
    address: str | None
    grid: GridRead
    created_at: datetime
    case_id: str | None
    escalation_level: int
    assignee: Assignee | None
    deadlines: Deadlines
    sla: list[ClockState]
    photos: int
    photo_urls: list[str] = Field(description="each photo, for those allowed to see it")
    feedback_given: bool
    timeline: list[TimelineEntry]
    links: dict[str, str]


class PendingVerification(BaseModel):
    case_id: str
    category: str
    grid: str
    location: dict[str, float]
    resolved_at: datetime | None
    verify_due_at: datetime | None
    distance_m: float | None = Field(description="from the inspector's last location")


class TaskRead(BaseModel):
    id: str
    case_id: str
    status: str
    category: str
    grid: str
    location: dict[str, float]
    description: str
    address: str | None
    offered_at: datetime
    accept_due_at: datetime
    accepted_at: datetime | None
    arrived_at: datetime | None
    resolved_at: datetime | None
    deadlines: Deadlines
    escalation_level: int
    photo_urls: list[str] = Field(description="the residents' photos of the case")


class CaseSummary(BaseModel):
    id: str
    status: str
    category: str
    grid: str
    priority: int
    escalation_level: int
    assignee_worker_id: str | None
    department: str | None = Field(description="the department whose queue holds the case")
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    location: dict[str, float]


class CasePage(BaseModel):
    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


class TaskBrief(BaseModel):
    id: str
    worker_id: str
    status: str
    offered_at: datetime
    accept_due_at: datetime


class TimerRead(BaseModel):
    kind: str
    due_at: datetime
    state: str
    fired_at: datetime | None


class CaseRead(CaseSummary):
    grid_set_version: int
    resolved_at: datetime | None
    report_ids: list[str]
    task: TaskBrief | None
    deadlines: Deadlines
    sla: list[ClockState]
    timers: list[TimerRead]
    timeline: list[TimelineEntry]


class CategoryRead(BaseModel):
    code: str
    name_zh: str
    name_en: str
    priority: int
    accept_s: int
    on_site_s: int
    close_s: int
    calendar: str = Field(description="24x7, or working_hours (only working time counts)")
    verify_s: int | None = Field(description="set when cases are verified (核查) before closing")
    department: str | None = Field(description="the department whose queue takes these cases")
    skill: str | None = Field(description="workers with this skill are offered these cases first")


class WorkerProfileRead(BaseModel):
    id: str
    name: str
    grid: str
    department: str | None
    skills: list[str]
    capacity: int
    on_duty: bool
    open_tasks: int


class PersonalPhoto(BaseModel):
    id: str
    url: str = Field(description="the photo's bytes, for its resident's token")
    content_type: str
    width: int
    height: int
    size_bytes: int
    created_at: datetime


class PersonalFeedback(BaseModel):
    satisfied: bool
    score: int
    comment: str | None
    created_at: datetime


class PersonalCase(BaseModel):
    """The case a resident's report became, as its resident follows it."""

    id: str
    status: str
    created_at: datetime
    closed_at: datetime | None
    timeline: list[TimelineEntry]


class PersonalReport(BaseModel):
    id: str
    category: str
    description: str
    address: str | None
    location: dict[str, float] = Field(description="WGS-84, as stored")
    location_sent: dict[str, Any] = Field(description="as the phone sent it: lat, lon, crs")
    location_coarsened: bool = Field(description="the precise location is no longer kept")
    grid: str
    created_at: datetime
    case: PersonalCase | None
    photos: list[PersonalPhoto]
    feedback: list[PersonalFeedback]


class ResidentData(BaseModel):
    """Everything gridflow holds about one resident (GET /v1/me/data)."""

    subject: str
    generated_at: datetime
    reports: list[PersonalReport]
    not_included: list[str] = Field(
        description="what else exists and why it is not here",
    )


class ErasureRead(BaseModel):
    reports: int = Field(description="reports whose personal data was removed")
    cases: list[str] = Field(description="cases that recorded the erasure (PersonalDataErased)")
    photos: int = Field(description="photos deleted")
    event_fields: int = Field(description="personal fields erased from case events")
    locations_coarsened: int = Field(
        description="reports whose precise location was coarsened now (closed cases); an open "
        "case keeps it until it closes"
    )


class AccessEntry(BaseModel):
    id: int
    at: datetime
    role: str
    subject: str
    case_id: str | None
    report_id: str | None
    what: str = Field(description="report, case, task, photo or events")
    ref: str | None = Field(description="the photo's or task's id")


class AccessPage(BaseModel):
    items: list[AccessEntry]
    next_after: int | None = Field(description="pass as `after` for the next page")
    limit: int
