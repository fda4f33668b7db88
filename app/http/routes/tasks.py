"""Grid workers: wait for offers, then accept, decline, arrive and resolve."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.core.errors import Forbidden, TaskNotFound
from app.core.models import Task
from app.core.photos import CheckedPhoto
from app.http import views
from app.http.bodies import MAX_JSON_BYTES, parse_json, read_body, read_json, read_limited
from app.http.deps import CurrentWorker, Reader, RuntimeDep, UnitOfWork, WorkerPrincipal
from app.http.docs import body_docs, errors
from app.http.schemas import DeclineBody, LocationOnly, ResolveBody, TaskList, TaskRead
from dispatch import cases
from geo import to_wgs84

router = APIRouter(prefix="/v1/tasks", tags=["workers"])
ACTION_ERRORS = errors(400, 401, 403, 404, 409, 413, 422)


@router.get(
    "",
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
            tasks = await views.worker_tasks(session, worker.id)
        if wait and not any(t.status == "offered" for t in tasks):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(offered.wait(), timeout=wait)
                async with runtime.db.reader() as session:
                    tasks = await views.worker_tasks(session, worker.id)
    return TaskList(tasks=tasks)


@router.get("/{task_id}", summary="One of the worker's tasks", responses=errors(401, 403, 404))
async def read_task(task_id: str, worker: WorkerPrincipal, session: Reader) -> TaskRead:
    task = await session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    if task.worker_id != worker.subject:
        raise Forbidden("this task belongs to another worker")
    return await views.task_view(session, task)


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


@router.post("/{task_id}/accept", summary="Accept an offered task", responses=ACTION_ERRORS)
async def accept(
    task_id: str, worker: WorkerPrincipal, session: UnitOfWork, runtime: RuntimeDep
) -> TaskRead:
    task = await cases.accept_task(session, runtime.ctx, task_id, worker.subject)
    return await views.task_view(session, task)


@router.post(
    "/{task_id}/decline",
    summary="Decline an offered task (optional JSON `{reason}`); it goes to the next worker",
    responses=ACTION_ERRORS,
)
async def decline(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[DeclineBody, Depends(decline_body)],
    session: UnitOfWork,
    runtime: RuntimeDep,
) -> TaskRead:
    task = await cases.decline_task(session, runtime.ctx, task_id, worker.subject, body.reason)
    return await views.task_view(session, task)


@router.post(
    "/{task_id}/arrive",
    summary="Mark arrival on site; refused beyond the arrival radius (200 m by default)",
    responses=ACTION_ERRORS,
)
async def arrive(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[LocationOnly, Depends(arrive_body)],
    session: UnitOfWork,
    runtime: RuntimeDep,
) -> TaskRead:
    lon, lat = to_wgs84(body.location.lon, body.location.lat, body.location.crs)
    task = await cases.arrive(session, runtime.ctx, task_id, worker.subject, lon, lat)
    return await views.task_view(session, task)


@router.post(
    "/{task_id}/resolve",
    summary="Resolve the task with a note; JSON, or multipart with `resolution` and `photos`",
    responses=ACTION_ERRORS,
    openapi_extra=body_docs("ResolveBody", "resolution"),
)
async def resolve(
    task_id: str,
    worker: WorkerPrincipal,
    body: Annotated[tuple[ResolveBody, list[CheckedPhoto]], Depends(resolve_body)],
    session: UnitOfWork,
    runtime: RuntimeDep,
) -> TaskRead:
    resolution, photos = body
    for photo in photos:
        await asyncio.to_thread(runtime.photos.save, photo)
    task = await cases.resolve(
        session, runtime.ctx, task_id, worker.subject, resolution.note, photos
    )
    return await views.task_view(session, task)
