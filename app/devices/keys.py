"""Sensor and camera authentication: every request signed with a per-device key.

A device holds a key id and a secret. It signs each request with HMAC-SHA256 over
`"<timestamp>\\n<METHOD>\\n<path>\\n"` followed by the exact body bytes, and sends
`X-Device-Key-Id`, `X-Timestamp` (Unix seconds) and `X-Signature` (hex). gridflow refuses a
timestamp more than `WINDOW_S` from its clock, an unknown or revoked key, a wrong signature, and
any signature it has already seen (a replay).

Secrets are never stored: a key's secret is derived from the key id under the server's device
master key (HMAC-SHA256), so the database holds key ids only and a copy of it reveals nothing.
Rotation is a new key id (the old one works until revoked); revocation is a timestamp on the
key, or on the device for all of its keys. A secret is shown once, when the key is made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Device, DeviceKey, SeenSignature
from app.platform.db import Database
from app.platform.errors import Unauthorized

WINDOW_S = 300


def key_secret(master: bytes, key_id: str) -> str:
    digest = hmac.new(master, b"gridflow device key\x00" + key_id.encode(), hashlib.sha256)
    return "gfs_" + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def new_key_id() -> str:
    return "dk_" + secrets.token_hex(10)


def signing_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = signing_message(timestamp, method, path, body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def add_key(session: AsyncSession, device_id: str, master: bytes, now: datetime) -> tuple[str, str]:
    """A new key for the device; returns (key id, secret). The secret is not stored."""
    key_id = new_key_id()
    session.add(DeviceKey(id=key_id, device_id=device_id, created_at=now))
    return key_id, key_secret(master, key_id)


def check_signature(
    master: bytes,
    *,
    key_id: str | None,
    timestamp: str | None,
    signature: str | None,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
) -> None:
    """Unauthorized, saying why, unless `signature` signs this request with `key_id`'s secret
    within the window. Needs no database: the secret is derived from the key id."""
    if not key_id or not timestamp or not signature:
        raise Unauthorized(
            "sign the request: X-Device-Key-Id, X-Timestamp and X-Signature are required"
        )
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthorized("X-Timestamp must be Unix seconds")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > WINDOW_S:
        raise Unauthorized(
            f"X-Timestamp is {int(skew)} s from the server's clock (limit {WINDOW_S})"
        )
    expected = sign(key_secret(master, key_id[:40]), timestamp, method, path, body)
    if not hmac.compare_digest(expected, signature.lower()):
        raise Unauthorized("the signature does not match the request")


UNKNOWN_KEY = "unknown or revoked device key"
REPLAY = "this signed request was already received (replay)"


async def live_device(session: AsyncSession, key_id: str) -> Device:
    """The device of a key, Unauthorized if the key or the device is revoked (or unknown)."""
    key = await session.get(DeviceKey, key_id[:40])
    device = await session.get(Device, key.device_id) if key else None
    if key is None or device is None or key.revoked_at is not None or device.revoked_at:
        raise Unauthorized(UNKNOWN_KEY)
    return device


class KeyOwners:
    """Which device each key id belongs to, remembered (a key never changes device).
    Whether the key or its device is revoked is not remembered: it is checked by the
    statement that accepts the request (app/intake/write.py)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._owners: dict[str, str] = {}
        self._max_keys = max_keys

    async def device_of(self, db: Database, key_id: str) -> str | None:
        key_id = key_id[:40]  # as stored and as looked up
        owner = self._owners.get(key_id)
        if owner is None:
            async with db.reader() as session:
                owner = await session.scalar(
                    select(DeviceKey.device_id).where(DeviceKey.id == key_id)
                )
            if owner is not None:
                if len(self._owners) >= self._max_keys:
                    self._owners.clear()
                self._owners[key_id] = owner
        return owner


async def remember_signature(db: Database, signature: str, key_id: str, now: datetime) -> None:
    """Record a verified signature; seeing it again within the window is a replay."""
    try:
        async with db.transaction() as uow:
            session = uow.session
            session.add(SeenSignature(signature=signature.lower(), key_id=key_id, seen_at=now))
    except IntegrityError as exc:
        raise Unauthorized(REPLAY) from exc


async def prune_signatures(db: Database, now: datetime) -> None:
    """Signatures older than twice the window can never be replayed: their timestamp is stale."""
    async with db.transaction() as uow:
        session = uow.session
        await session.execute(
            delete(SeenSignature).where(
                SeenSignature.seen_at < now - timedelta(seconds=2 * WINDOW_S)
            )
        )


async def device_keys(session: AsyncSession, device_id: str) -> list[DeviceKey]:
    rows = await session.scalars(
        select(DeviceKey).where(DeviceKey.device_id == device_id).order_by(DeviceKey.created_at)
    )
    return list(rows)
