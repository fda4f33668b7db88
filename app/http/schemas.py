"""Request and response bodies. Separate from the ORM models on purpose."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.reads.schemas import GridRead, TaskRead
from geo import CRS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class LocationIn(Strict):
    lat: Latitude
    lon: Longitude
    crs: CRS = CRS.WGS84


class ReportCreate(Strict):
    category: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    location: LocationIn
    address: str | None = Field(default=None, max_length=500)


class AlertCreate(Strict):
    external_id: str = Field(min_length=1, max_length=128)
    category: str = Field(min_length=1, max_length=64)
    location: LocationIn
    observed_at: datetime
    confidence: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)


class GridLocated(GridRead):
    """The unit grid holding a point, in the grid-set version that located it."""

    level: str
    responsible: str | None
    grid_set_version: int


class GridFeatureProperties(BaseModel):
    code: str = Field(examples=["33010600100101"], description="CJ/T 213 code")
    level: Literal["district", "street", "community", "unit"] = "unit"
    name: str | None = None
    parent: str | None = Field(default=None, description="the code of the grid one level up")
    responsible: str | None = Field(default=None, description="who answers for the grid")


class GridFeature(BaseModel):
    type: Literal["Feature"]
    properties: GridFeatureProperties
    geometry: dict[str, Any] = Field(description="a GeoJSON Polygon or MultiPolygon in WGS-84")


class GridCollection(BaseModel):
    """A whole grid set as a GeoJSON FeatureCollection."""

    type: Literal["FeatureCollection"]
    features: list[GridFeature]


class GridProblem(BaseModel):
    kind: str = Field(examples=["overlap"])
    message: str
    feature: int | None = Field(default=None, description="position in `features`")
    code: str | None = None
    others: list[str] = Field(default=[], description="the other grids involved")
    area_m2: float | None = None
    at: list[float] | None = Field(default=None, description="[lon, lat] in or on the problem")


class GridSetImported(BaseModel):
    version: int
    grids: int
    units: int
    warnings: list[GridProblem]


class ReportAccepted(BaseModel):
    id: str
    status: str
    category: str
    grid: GridRead
    created_at: datetime
    links: dict[str, str]


class AlertAccepted(BaseModel):
    id: str
    grid: GridRead
    case_id: str | None
    duplicate: bool = Field(description="True when this external_id was received before.")


class PauseBody(Strict):
    kind: Literal["waiting_for_resident", "extension"] = Field(
        description="waiting for the resident, or an approved extension (延期)"
    )
    reason: str = Field(min_length=1, max_length=500)


class FeedbackCreate(Strict):
    satisfied: bool
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackResult(BaseModel):
    report_id: str
    case_id: str
    case_status: str


class LocationOnly(Strict):
    location: LocationIn


class WorkerStatusUpdate(Strict):
    on_duty: bool
    location: LocationIn | None = Field(default=None, description="where the worker is now")
    device_time: AwareDatetime | None = Field(
        default=None, description="when the phone took the location, by its own clock"
    )


class WorkerLocation(BaseModel):
    lat: float
    lon: float
    received_at: datetime
    device_time: datetime | None


class WorkerStatusRead(BaseModel):
    id: str
    name: str
    grid: str
    on_duty: bool
    location: WorkerLocation | None
    open_tasks: int
    capacity: int


class VerifyBody(Strict):
    passed: bool = Field(description="true: the work holds; false: rework (返工)")
    note: str = Field(min_length=1, max_length=2000, description="what the inspector found")
    location: LocationIn | None = Field(
        default=None, description="where the inspector is (required of inspectors: on site)"
    )


class VerificationRead(BaseModel):
    case_id: str
    passed: bool
    case_status: str


class ReturnBody(Strict):
    reason: str = Field(min_length=1, max_length=500, description="why it is handed back")


class DeclineBody(Strict):
    reason: str | None = Field(default=None, max_length=500)


class ResolveBody(Strict):
    note: str = Field(min_length=1, max_length=2000)


class TaskList(BaseModel):
    tasks: list[TaskRead]


class ErrorBody(BaseModel):
    """Every error answer: a stable machine-readable code, a sentence, and sometimes more."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(examples=["outside_service_area"])
    detail: Any = Field(examples=["the location is outside every grid of the service area"])


class StatsFigures(BaseModel):
    """One group's figures (docs/STATS.md defines each); a rate with nothing to divide is null."""

    key: str | None = Field(description="the grid, street, department or category; null: none")
    received: int
    dispatched: int
    closed: int
    closed_on_time: int
    on_time_rate: float | None = Field(description="按期结案率: closed_on_time / closed")
    right_first_time: int
    right_first_time_rate: float | None = Field(
        description="准确派遣率: right_first_time / dispatched"
    )
    resolved: int
    reopened: int
    reworked: int
    rework_rate: float | None = Field(description="返工率: reopened or reworked / resolved")
    feedback: int
    satisfied: int
    satisfaction_rate: float | None = Field(description="满意率: satisfied / feedback")
    accept_median_s: float | None
    accept_p90_s: float | None
    arrive_median_s: float | None
    arrive_p90_s: float | None
    close_median_s: float | None
    close_p90_s: float | None


class StatsRead(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    by: str | None
    groups: list[StatsFigures]
    total: StatsFigures


class WorkerProfileBody(Strict):
    name: str = Field(min_length=1, max_length=100)
    grid: str = Field(
        min_length=1,
        max_length=20,
        description="a unit grid: where a grid worker works, or where a department's is based",
    )
    department: str | None = Field(
        default=None, max_length=64, description="set: the worker takes that department's queue"
    )
    skills: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list,
        max_length=20,
        description="matched against categories' skills; `inspect` makes an inspector (核查)",
    )
    capacity: int = Field(default=3, ge=1, le=50, description="open tasks held at most")
