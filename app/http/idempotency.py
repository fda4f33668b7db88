"""Idempotency-Key: a retried request gets the first answer, and nothing is done twice.

A client (a resident's phone on a flaky network, a worker's app, a sensor) sends a unique
`Idempotency-Key` with a request. The first request claims the key inside its own transaction
(a row keyed by principal and key), does its work and records its answer in the same
transaction. A retry with the same key and the same request gets that answer again, marked
`Idempotent-Replayed: true`, and writes nothing; the same key with a different request is
refused with 422 `idempotency_key_reused`. Two copies arriving at once: the second waits on the
first's row (PostgreSQL's unique index; SQLite's single writer) and then replays it.
Keys are kept as long as done outbox rows (`bus.outbox_keep_s`, a day by default).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyRecord
from app.platform.db import Database
from app.platform.errors import AppError

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique key per logical request (e.g. a UUID); a retry with the same key "
        "gets the first answer and changes nothing.",
    ),
]


_KEY = re.compile(r"[\x21-\x7e]{1,200}")

KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A unique key per logical request (e.g. a UUID); a retry with the same key "
    "gets the first answer and changes nothing.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[\x21-\x7e]+$"},
}


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, checked as `IdempotencyKey` checks it, for routes that
    take only the request (documented with `KEY_PARAMETER`)."""
    key = request.headers.get("idempotency-key")
    if key is None or _KEY.fullmatch(key):
        return key
    raise RequestValidationError(
        [
            {
                "loc": ("header", "Idempotency-Key"),
                "msg": "1 to 200 printable ASCII characters, no spaces",
                "type": "string_pattern_mismatch",
            }
        ]
    )


class IdempotencyKeyReused(AppError):
    status, code = 422, "idempotency_key_reused"


def fingerprint(*parts: Any) -> str:
    """A stable hash of what the request asks for (not of its bytes: multipart boundaries vary)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Claim:
    """Either a replay of the first answer, or the row this request must complete."""

    replay: JSONResponse | None
    record: IdempotencyRecord | None

    def complete(self, status: int, answer: BaseModel) -> None:
        if self.record is not None:
            self.record.status = status
            self.record.body = answer.model_dump(mode="json")


def _answer(record: IdempotencyRecord, request_hash: str) -> JSONResponse:
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; use a new key"
        )
    # A row is seen only once committed, and it is committed only with its answer.
    assert record.body is not None
    return JSONResponse(
        record.body, status_code=record.status, headers={"Idempotent-Replayed": "true"}
    )


def record_row(
    principal: str, key: str, request_hash: str, status: int, answer: BaseModel, now: datetime
) -> dict[str, Any]:
    """The key's record complete with its answer, for writers that record it in the same
    statement as the work (app/intake/write.py)."""
    return {
        "principal": principal,
        "key": key,
        "request_hash": request_hash,
        "status": status,
        "body": answer.model_dump(mode="json"),
        "created_at": now,
    }


async def replay(db: Database, record: dict[str, Any]) -> JSONResponse:
    """The first answer for `record`'s key, which another request recorded (422 if that
    request asked for something else)."""
    async with db.reader() as session:
        found = await session.get(IdempotencyRecord, (record["principal"], record["key"]))
    if found is None:  # recorded a moment ago, so only a purge could have removed it
        raise RuntimeError("an Idempotency-Key's record vanished while being replayed")
    return _answer(found, record["request_hash"])


async def claim(
    session: AsyncSession, principal: str, key: str | None, request_hash: str, now: datetime
) -> Claim:
    """Claim `key` for this request in the open transaction, or return the first answer."""
    if key is None:
        return Claim(None, None)
    found = await session.get(IdempotencyRecord, (principal, key))
    if found is not None:
        return Claim(_answer(found, request_hash), None)
    record = IdempotencyRecord(
        principal=principal, key=key, request_hash=request_hash, status=0, body=None, created_at=now
    )
    try:
        async with session.begin_nested():
            session.add(record)
            await session.flush()
    except IntegrityError:
        # Another request with this key committed first: answer as it did.
        found = await session.get(IdempotencyRecord, (principal, key), populate_existing=True)
        if found is None:
            raise
        return Claim(_answer(found, request_hash), None)
    return Claim(None, record)
