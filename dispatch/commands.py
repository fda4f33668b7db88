"""What can be asked of the engine, and the one table that says who does it.

Every change to a case enters here, whoever asks: a consumed ReportReceived becomes
`DispatchReport`, a worker's tap `AcceptTask`, an operator's button `PauseClocks`. `handle` looks
the command up in `HANDLERS` and runs its handler in the caller's unit of work, so idempotency,
batching and replay have one door to watch. A handler raises an `AppError` for a command that
cannot be carried out (InvalidTransition with the current state, TaskNotFound, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from app.cases.states import PauseKind
from app.models import Case, Task, Worker
from app.photos.store import CheckedPhoto
from app.platform.uow import UnitOfWork
from app.privacy import erase
from dispatch import batch, cases, opening, pauses, workers
from dispatch.context import DispatchContext

R = TypeVar("R")


class Command(Generic[R]):
    """A request to the engine whose handler answers with an R."""


@dataclass(frozen=True)
class DispatchReport(Command[None]):
    """Open a case for a received report, or join the open case it repeats, and offer it."""

    report_id: str


@dataclass(frozen=True)
class AcceptTask(Command[Task]):
    task_id: str
    worker_id: str


@dataclass(frozen=True)
class DeclineTask(Command[Task]):
    task_id: str
    worker_id: str
    reason: str | None


@dataclass(frozen=True)
class ReturnTask(Command[Task]):
    """回退: hand an accepted task back with a reason."""

    task_id: str
    worker_id: str
    reason: str


@dataclass(frozen=True)
class ArriveOnSite(Command[Task]):
    task_id: str
    worker_id: str
    lon: float  # WGS-84
    lat: float


@dataclass(frozen=True)
class ResolveTask(Command[Task]):
    task_id: str
    worker_id: str
    note: str
    photos: tuple[CheckedPhoto, ...] = ()  # already stored


@dataclass(frozen=True)
class VerifyCase(Command[Case]):
    """核查: an inspector's (or an operator's) verdict."""

    case_id: str
    actor: str
    inspector_id: str | None  # None: an operator
    passed: bool
    note: str
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True)
class GiveFeedback(Command[Case]):
    report_id: str
    resident_id: str
    satisfied: bool
    score: int
    comment: str | None


@dataclass(frozen=True)
class PauseClocks(Command[Case]):
    case_id: str
    kind: PauseKind
    reason: str
    actor: str


@dataclass(frozen=True)
class ResumeClocks(Command[Case]):
    case_id: str
    actor: str


@dataclass(frozen=True)
class SetWorkerStatus(Command[Worker]):
    worker_id: str
    update: workers.StatusUpdate


@dataclass(frozen=True)
class SaveWorkerProfile(Command[Worker]):
    worker_id: str
    profile: workers.Profile


@dataclass(frozen=True)
class EraseResident(Command[erase.Erasure]):
    """A resident's right to erasure: their personal data removed, each case's history and
    figures kept (app/privacy/erase.py). The photo files go after the commit."""

    resident_id: str
    coarsen_m: float


Handler = Callable[[UnitOfWork, DispatchContext, Any], Awaitable[Any]]

HANDLERS: dict[type[Command[Any]], Handler] = {
    DispatchReport: lambda uow, ctx, c: opening.dispatch_report(uow, ctx, c.report_id),
    AcceptTask: lambda uow, ctx, c: cases.accept_task(uow, ctx, c.task_id, c.worker_id),
    DeclineTask: lambda uow, ctx, c: cases.decline_task(uow, ctx, c.task_id, c.worker_id, c.reason),
    ReturnTask: lambda uow, ctx, c: cases.return_task(uow, ctx, c.task_id, c.worker_id, c.reason),
    ArriveOnSite: lambda uow, ctx, c: cases.arrive(uow, ctx, c.task_id, c.worker_id, c.lon, c.lat),
    ResolveTask: lambda uow, ctx, c: cases.resolve(
        uow, ctx, c.task_id, c.worker_id, c.note, list(c.photos)
    ),
    VerifyCase: lambda uow, ctx, c: cases.verify(
        uow,
        ctx,
        c.case_id,
        actor=c.actor,
        inspector_id=c.inspector_id,
        passed=c.passed,
        note=c.note,
        lon=c.lon,
        lat=c.lat,
    ),
    GiveFeedback: lambda uow, ctx, c: cases.give_feedback(
        uow,
        ctx,
        c.report_id,
        c.resident_id,
        satisfied=c.satisfied,
        score=c.score,
        comment=c.comment,
    ),
    PauseClocks: lambda uow, ctx, c: pauses.pause(
        uow, ctx, c.case_id, kind=c.kind, reason=c.reason, actor=c.actor
    ),
    ResumeClocks: lambda uow, ctx, c: pauses.resume(uow, ctx, c.case_id, actor=c.actor),
    SetWorkerStatus: lambda uow, ctx, c: workers.set_status(uow, ctx, c.worker_id, c.update),
    SaveWorkerProfile: lambda uow, ctx, c: workers.save_profile(uow, ctx, c.worker_id, c.profile),
    EraseResident: lambda uow, ctx, c: erase.erase_resident(
        uow, ctx.clock.now(), c.resident_id, coarsen_m=c.coarsen_m
    ),
}


async def handle_many(
    uow: UnitOfWork, ctx: DispatchContext, commands: Sequence[Command[Any]]
) -> None:
    """Carry out many commands, in order, in `uow`: each run of DispatchReport goes through the
    batched path (dispatch/batch.py) as one, the others one at a time."""
    reports: list[str] = []
    for command in commands:
        if isinstance(command, DispatchReport):
            reports.append(command.report_id)
            continue
        if reports:
            await batch.dispatch_reports(uow, ctx, reports)
            reports = []
        await HANDLERS[type(command)](uow, ctx, command)
    if reports:
        await batch.dispatch_reports(uow, ctx, reports)
    await uow.flush()


async def handle(uow: UnitOfWork, ctx: DispatchContext, command: Command[R]) -> R:
    """Carry out `command` in `uow` (which its owner commits). What it wrote, its case events
    included, is flushed, so the caller's reads in the same transaction see it."""
    result = await HANDLERS[type(command)](uow, ctx, command)
    await uow.flush()
    return cast(R, result)
