"""Registering sensors and cameras, rotating and revoking their keys.

The caller owns the transaction (services only flush). A secret is returned once, in
`NewKey`, and never stored or logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.devices.keys import add_key, device_keys
from app.models import Device, DeviceKey
from app.platform.errors import AppError, NotFound


class DeviceExists(AppError):
    status, code = 409, "device_exists"


class DeviceNotFound(NotFound):
    code = "device_not_found"


@dataclass(frozen=True)
class NewKey:
    device_id: str
    key_id: str
    secret: str

    def to_dict(self) -> dict[str, str]:
        return {"device_id": self.device_id, "key_id": self.key_id, "secret": self.secret}


@dataclass(frozen=True)
class DeviceListing:
    id: str
    name: str
    revoked: bool
    live_keys: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "state": "revoked" if self.revoked else "active",
            "live_keys": self.live_keys,
        }


async def create_device(
    session: AsyncSession, device_id: str, name: str | None, master: bytes, now: datetime
) -> NewKey:
    if await session.get(Device, device_id) is not None:
        raise DeviceExists(f"device {device_id!r} exists", device_id=device_id)
    session.add(Device(id=device_id, name=name or device_id, created_at=now))
    await session.flush()
    key_id, secret = add_key(session, device_id, master, now)
    return NewKey(device_id, key_id, secret)


async def rotate_key(session: AsyncSession, device_id: str, master: bytes, now: datetime) -> NewKey:
    """A new key for an active device; its older keys keep working until revoked."""
    device = await session.get(Device, device_id)
    if device is None or device.revoked_at is not None:
        raise DeviceNotFound(f"no active device {device_id!r}", device_id=device_id)
    key_id, secret = add_key(session, device_id, master, now)
    return NewKey(device_id, key_id, secret)


async def revoke(
    session: AsyncSession, *, key_id: str | None, device_id: str | None, now: datetime
) -> str:
    """Revoke one key, or a device and so all of its keys; revoking twice keeps the first time.
    Returns what was revoked."""
    row: Device | DeviceKey | None = None
    if key_id is not None:
        row = await session.get(DeviceKey, key_id)
    elif device_id is not None:
        row = await session.get(Device, device_id)
    if row is None:
        raise DeviceNotFound("no such device or key", key_id=key_id, device_id=device_id)
    row.revoked_at = row.revoked_at or now
    return row.id


async def list_devices(session: AsyncSession) -> list[DeviceListing]:
    listing = []
    for d in await session.scalars(select(Device).order_by(Device.id)):
        keys = await device_keys(session, d.id)
        live = [k.id for k in keys if k.revoked_at is None]
        listing.append(DeviceListing(d.id, d.name, d.revoked_at is not None, live))
    return listing
