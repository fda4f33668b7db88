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
