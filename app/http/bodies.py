"""Reading request bodies: JSON, or multipart with a JSON part and photos.

Limits are checked while reading, so an oversized body is refused with 413 without being held
in memory. JSON is parsed strictly (NaN and Infinity are not JSON and are refused).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from app.photos.store import CheckedPhoto, check_photo
from app.platform.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from app.platform.settings import IntakeSettings

M = TypeVar("M", bound=BaseModel)

MAX_JSON_BYTES = 64 * 1024


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {declared} bytes; the limit is {limit}", limit_bytes=limit
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes", limit_bytes=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(model: type[M], raw: bytes | str, *, where: str = "body") -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors: list[Any] = []
        for error in exc.errors():
            item: dict[str, Any] = dict(error)
            item["loc"] = (where, *error.get("loc", ()))
            errors.append(item)
        raise RequestValidationError(errors) from exc


async def read_json(request: Request, model: type[M]) -> M:
    return parse_json(model, await read_limited(request, MAX_JSON_BYTES))


async def read_body(
    request: Request, model: type[M], *, json_part: str, limits: IntakeSettings
) -> tuple[M, list[CheckedPhoto]]:
    """A JSON body, or multipart/form-data with `json_part` (JSON) and up to N `photos`."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        return await read_json(request, model), []
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("send application/json or multipart/form-data")
    total_limit = limits.max_photos * limits.max_photo_bytes + MAX_JSON_BYTES + 64 * 1024
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > total_limit:
        raise PayloadTooLarge(
            f"the body is {declared} bytes; the limit is {total_limit}", limit_bytes=total_limit
        )
    try:
        form = await request.form(
            max_files=limits.max_photos + 1, max_fields=4, max_part_size=MAX_JSON_BYTES
        )
    except MultiPartException as exc:
        raise BadRequest(f"unreadable multipart body: {exc.message}") from exc
    try:
        part = form.get(json_part)
        if part is None:
            raise ValidationFailed(f"the multipart body needs a {json_part!r} part (JSON)")
        raw = await part.read() if isinstance(part, UploadFile) else part
        parsed = parse_json(model, raw, where=json_part)
        uploads = form.getlist("photos")
        if len(uploads) > limits.max_photos:
            raise ValidationFailed(
                f"at most {limits.max_photos} photos per request", limit=limits.max_photos
            )
        photos: list[CheckedPhoto] = []
        for i, upload in enumerate(uploads):
            if not isinstance(upload, UploadFile):
                raise ValidationFailed(f"photos[{i}] must be a file")
            data = await upload.read(limits.max_photo_bytes + 1)
            name = upload.filename or f"photos[{i}]"
            photos.append(
                await asyncio.to_thread(
                    check_photo,
                    data,
                    name=name,
                    max_bytes=limits.max_photo_bytes,
                    max_pixels=limits.max_image_pixels,
                )
            )
        return parsed, photos
    finally:
        await form.close()


def json_answer(answer: BaseModel, status: int = 200) -> Response:
    """`answer` as the response, serialised once by its own model (a route returning a model
    has it validated and serialised again by FastAPI)."""
    return Response(answer.model_dump_json(), status_code=status, media_type="application/json")
