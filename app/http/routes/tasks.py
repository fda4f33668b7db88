"""Grid workers: wait for offers, then accept, decline, arrive and resolve."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app import reads
from app.auth.tokens import Principal, Role
from app.cases.states import TaskStatus
from app.http import idempotency
from app.http.bodies import MAX_JSON_BYTES, parse_json, read_body, read_json, read_limited
from app.http.deps import (
    CurrentWorker,
    Reader,
    RuntimeDep,
    UowDep,
    WorkerPrincipal,
    limit,
)
from app.http.docs import body_docs, errors
from app.http.idempotency import IdempotencyKey, fingerprint
from app.http.schemas import DeclineBody, LocationOnly, ResolveBody, ReturnBody, TaskList
from app.models import Task
from app.photos.store import CheckedPhoto
from app.platform.errors import Forbidden, TaskNotFound
from app.platform.uow import UnitOfWork
from app.reads.schemas import TaskRead
from app.runtime import Runtime
from dispatch import commands
from dispatch.commands import (
    AcceptTask,
    ArriveOnSite,
    Command,
    DeclineTask,
    ResolveTask,
    ReturnTask,
)
from geo import to_wgs84

router = APIRouter(prefix="/v1/tasks", tags=["workers"])
ACTION_ERRORS = errors(400, 401, 403, 404, 409, 413, 422)


@router.get(
    "",
    dependencies=[limit("reads")],
    summary="The worker's active tasks; with `wait`, long-poll until an offer arrives",
    description="Answers at once if a task is on offer to the worker. Otherwise waits up to "
    "`wait` seconds for a new offer, then answers with the active tasks (possibly none).",
    responses=errors(401, 403),
)
async def list_tasks(
    worker: CurrentWorker,
    runtime: RuntimeDep,
    wait: Annotated[int, Query(ge=0, le=60, description="Seconds to wait for an offer")] = 0,
) -> TaskList:
    with runtime.hub.offers_for(worker.id) as offered:
        async with runtime.db.reader() as session:
            tasks = await reads.worker_tasks(session, worker.id)
        if wait and not any(t.status == TaskStatus.OFFERED for t in tasks):
            with contextlib.suppress(TimeoutError), runtime.metrics.subscribed("long_poll"):
                await asyncio.wait_for(offered.wait(), timeout=wait)
                async with runtime.db.reader() as session:
                    tasks = await reads.worker_tasks(session, worker.id)
    for task in tasks:
        _record(runtime, Principal(Role.WORKER, worker.id), task)
    return TaskList(tasks=tasks)


def _record(runtime: Runtime, worker: Principal, task: TaskRead) -> None:
    """A task shows its resident's description, address, location and photos: logged."""
    runtime.access.record(worker, "task", case_id=task.case_id, ref=task.id)


@router.get(
    "/{task_id}",
    dependencies=[limit("reads")],
    summary="One of the worker's tasks",
    responses=errors(401, 403, 404),
)
async def read_task(
    task_id: str, worker: WorkerPrincipal, session: Reader, runtime: RuntimeDep
) -> TaskRead:
    task = await session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    if task.worker_id != worker.subject:
        raise Forbidden("this task belongs to another worker")
    view = await reads.task_view(session, task)
    _record(runtime, worker, view)
    return view


async def decline_body(request: Request, _: WorkerPrincipal) -> DeclineBody:
    raw = await read_limited(request, MAX_JSON_BYTES)
    return parse_json(DeclineBody, raw) if raw.strip() else DeclineBody()


async def arrive_body(request: Request, _: WorkerPrincipal) -> LocationOnly:
    return await read_json(request, LocationOnly)


async def resolve_body(
    request: Request, runtime: RuntimeDep, _: WorkerPrincipal
) -> tuple[ResolveBody, list[CheckedPhoto]]:
    return await read_body(
        request, ResolveBody, json_part="resolution", limits=runtime.settings.intake
    )


async def _act(
    uow: UnitOfWork,
    runtime: Runtime,
    worker: Principal,
    key: str | None,
    request: tuple[Any, ...],
    command: Command[Task],
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> TaskRead | JSONResponse:
    """Run a worker's command once per Idempotency-Key; a retry gets the first answer.
    `prepare` runs only for the first (storing the photos a resolution carries)."""
    claim = await idempotency.claim(
        uow.session, worker.actor, key, fingerprint(*request), runtime.clock.now()
    )
    if claim.replay is not None:
        return claim.replay
    if prepare is not None:
        await prepare()
    task = await commands.handle(uow, runtime.ctx, command)
    answer = await reads.task_view(uow.session, task)
    _record(runtime, worker, answer)
    claim.complete(200, answer)
    return answer


@router.post(
    "/{task_id}/accept",
    dependencies=[limit("worker_actions")],
    response_model=TaskRead,
    summary="Accept an offered task",
    responses=ACTION_ERRORS,
)
async def accept(
    task_id: str,
    worker: WorkerPrincipal,
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TaskRead | JSONResponse:
    return await _act(
        uow,
        runtime,
        worker,
        idempotency_key,
        ("accept", task_id),
        AcceptTask(task_id, worker.subject),
    )


@router.post(
    "/{task_id}/decline",
    dependencies=[limit("worker_actions")],
    response_model=TaskRead,
    summary="Decline an offered task (optional JSON `{reason}`); it goes to the next worker",
    responses=ACTION_ERRORS,
)
async def decline(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[DeclineBody, Depends(decline_body)],
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TaskRead | JSONResponse:
    return await _act(
        uow,
        runtime,
        worker,
        idempotency_key,
        ("decline", task_id, body.model_dump(mode="json")),
        DeclineTask(task_id, worker.subject, body.reason),
    )


async def return_body(request: Request, _: WorkerPrincipal) -> ReturnBody:
    return await read_json(request, ReturnBody)


@router.post(
    "/{task_id}/return",
    response_model=TaskRead,
    dependencies=[limit("worker_actions")],
    summary="Hand an accepted task back (回退) with a reason; the case goes to another worker",
    responses=ACTION_ERRORS,
)
async def return_task(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[ReturnBody, Depends(return_body)],
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TaskRead | JSONResponse:
    return await _act(
        uow,
        runtime,
        worker,
        idempotency_key,
        ("return", task_id, body.model_dump(mode="json")),
        ReturnTask(task_id, worker.subject, body.reason),
    )


@router.post(
    "/{task_id}/arrive",
    dependencies=[limit("worker_actions")],
    response_model=TaskRead,
    summary="Mark arrival on site; refused beyond the arrival radius (200 m by default)",
    responses=ACTION_ERRORS,
)
async def arrive(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[LocationOnly, Depends(arrive_body)],
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TaskRead | JSONResponse:
    lon, lat = to_wgs84(body.location.lon, body.location.lat, body.location.crs)
    return await _act(
        uow,
        runtime,
        worker,
        idempotency_key,
        ("arrive", task_id, body.model_dump(mode="json")),
        ArriveOnSite(task_id, worker.subject, lon, lat),
    )


@router.post(
    "/{task_id}/resolve",
    dependencies=[limit("worker_actions")],
    response_model=TaskRead,
    summary="Resolve the task with a note; JSON, or multipart with `resolution` and `photos`",
    responses=ACTION_ERRORS,
    openapi_extra=body_docs("ResolveBody", "resolution"),
)
async def resolve(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[tuple[ResolveBody, list[CheckedPhoto]], Depends(resolve_body)],
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TaskRead | JSONResponse:
    resolution, photos = body

    async def store_photos() -> None:
        for photo in photos:
            await asyncio.to_thread(runtime.photos.save, photo)

    request = ("resolve", task_id, resolution.model_dump(mode="json"), [p.sha256 for p in photos])
    command = ResolveTask(task_id, worker.subject, resolution.note, tuple(photos))
    return await _act(uow, runtime, worker, idempotency_key, request, command, store_photos)
