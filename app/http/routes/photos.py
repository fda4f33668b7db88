"""Photos: served only to those allowed to see the report or task they belong to."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from app import reads
from app.http.deps import CurrentPrincipal, Reader, RuntimeDep, limit
from app.http.docs import errors
from app.models import Photo, Report
from app.platform.errors import Forbidden, NotFound

router = APIRouter(prefix="/v1/photos", tags=["photos"])

_EXTENSION = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class PhotoNotFound(NotFound):
    code = "photo_not_found"


@router.get(
    "/{photo_id}",
    dependencies=[limit("reads")],
    summary="A photo's bytes (metadata already stripped), for those allowed to see it",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        **errors(401, 403, 404),
    },
)
async def read_photo(
    photo_id: str, who: CurrentPrincipal, session: Reader, runtime: RuntimeDep
) -> Response:
    photo = await session.get(Photo, photo_id)
    if photo is None:
        raise PhotoNotFound(f"photo {photo_id} does not exist")
    if not await reads.may_see_photo(session, photo, who):
        raise Forbidden("this photo belongs to a report or task you have no part in")
    if photo.report_id is not None:  # a resident's photo: staff reads are logged
        report = await session.get(Report, photo.report_id)
        runtime.access.record(
            who,
            "photo",
            case_id=report.case_id if report else None,
            report_id=photo.report_id,
            ref=photo.id,
        )
    path = runtime.photos.path_for(photo.sha256, _EXTENSION[photo.content_type])
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError as exc:
        raise PhotoNotFound(f"photo {photo_id} is missing from storage") from exc
    return Response(
        data,
        media_type=photo.content_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )
