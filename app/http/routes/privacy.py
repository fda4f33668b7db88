"""Residents' data rights: download what gridflow holds about you, ask for its erasure; the log
of staff reads of personal data, for admins."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from app import reads
from app.http.deps import CityAdmin, Reader, Resident, RuntimeDep, limit
from app.http.docs import errors
from app.platform.errors import ValidationFailed
from app.privacy.erase import delete_unreferenced
from app.reads.schemas import AccessPage, ErasureRead, ResidentData
from dispatch import commands
from dispatch.commands import EraseResident

router = APIRouter(prefix="/v1", tags=["residents' data"])


@router.get(
    "/me/data",
    dependencies=[limit("reads")],
    summary="Everything gridflow holds about the calling resident, as JSON",
    description="Your reports (what you wrote, where, when), their photos (as links your token "
    "opens), your feedback and the public progress of each report's case. Reports whose "
    "personal data was removed are no longer yours and are not listed.",
    responses=errors(401, 403),
)
async def my_data(resident: Resident, session: Reader, runtime: RuntimeDep) -> ResidentData:
    return await reads.resident_data(session, resident.subject, runtime.clock.now())


@router.post(
    "/me/erase",
    dependencies=[limit("reports")],
    summary="Erase the calling resident's personal data; cases' histories and figures stay",
    description="Removes your id from your reports and their cases' histories, what you wrote "
    "(descriptions, addresses, feedback comments), your photos, and the precise location of "
    "reports whose case has closed (coarsened to `privacy.coarsen_m`). An open case keeps its "
    "location until it closes (its worker has to find the place), then it is coarsened too. "
    "Each case records the erasure (PersonalDataErased). Asking again removes nothing more.",
    responses=errors(401, 403),
)
async def erase_me(resident: Resident, runtime: RuntimeDep) -> ErasureRead:
    # This route owns its transaction: the photo files go only once their rows' deletion has
    # committed.
    command = EraseResident(resident.subject, runtime.settings.privacy.coarsen_m)
    async with runtime.db.transaction() as uow:
        erased = await commands.handle(uow, runtime.ctx, command)
    await delete_unreferenced(runtime.db, runtime.photos, erased.photos)
    return ErasureRead(
        reports=len(erased.reports),
        cases=erased.cases,
        photos=len(erased.photos),
        event_fields=erased.fields,
        locations_coarsened=erased.coarsened,
    )


@router.get(
    "/admin/access-log",
    dependencies=[limit("admin")],
    summary="Staff reads of residents' personal data: who, when, which case, what",
    description="The whole city's (an admin token without a scope). In the order recorded; "
    "filter by `case`, by the staff member's `subject`, "
    "and from `since`; page with `after` (the previous page's `next_after`).",
    responses=errors(401, 403, 422),
)
async def access_log(
    _: CityAdmin,
    session: Reader,
    case: Annotated[str | None, Query(max_length=36)] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    since: AwareDatetime | None = None,
    after: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AccessPage:
    try:
        start = since.astimezone(UTC) if since is not None else None
    except OverflowError as exc:  # a year 1 or 9999 in a far time zone
        raise ValidationFailed("`since` is out of range") from exc
    return await reads.access_page(
        session, case_id=case, subject=subject, since=start, after=after, limit=limit
    )
