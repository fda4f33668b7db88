"""`gridflow device`: sensors and cameras, their keys (app/devices/admin.py does the work)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from app.cli.common import JSON_OPTION, CliError, arun, database, note, print_json, settings

DEVICE_ID = typer.Option("--id", help="the device's id, e.g. cam-900")


def create(
    device_id: Annotated[str, DEVICE_ID],
    name: Annotated[str | None, typer.Option(help="a name people know it by")] = None,
) -> None:
    """Register a device; prints its key id and secret once (JSON on standard output).

    Example: gridflow device create --id cam-900 --name "Gate camera"
    """
    from app.devices.admin import create_device

    s = settings()

    async def run() -> dict[str, str]:
        async with database(s) as db, db.transaction() as uow:
            key = await create_device(
                uow.session, device_id, name, s.device_master_key(), datetime.now(UTC)
            )
        return key.to_dict()

    print_json(arun(run()))


def rotate(device_id: Annotated[str, DEVICE_ID]) -> None:
    """A new signing key for a device (printed once); its older keys work until revoked.

    Example: gridflow device rotate --id cam-900
    """
    from app.devices.admin import rotate_key

    s = settings()

    async def run() -> dict[str, str]:
        async with database(s) as db, db.transaction() as uow:
            key = await rotate_key(uow.session, device_id, s.device_master_key(), datetime.now(UTC))
        return key.to_dict()

    print_json(arun(run()))
    note("the device's older keys still work until `gridflow device revoke --key KEY_ID`")


def revoke(
    key: Annotated[str | None, typer.Option(help="one key id (dk_...)")] = None,
    device_id: Annotated[
        str | None, typer.Option("--id", help="a device id: all of its keys")
    ] = None,
) -> None:
    """Revoke one key, or a whole device (give exactly one of --key and --id).

    Example: gridflow device revoke --key dk_0123456789abcdef0123
    """
    from app.devices import admin

    if (key is None) == (device_id is None):
        raise CliError("give exactly one of --key and --id")

    async def run() -> str:
        async with database(settings()) as db, db.transaction() as uow:
            return await admin.revoke(
                uow.session, key_id=key, device_id=device_id, now=datetime.now(UTC)
            )

    print(f"gridflow: revoked {arun(run())}")


def listing(as_json: bool = JSON_OPTION) -> None:
    """List devices and their live key ids (never a secret).

    Example: gridflow device list --json
    """
    from app.devices.admin import list_devices

    async def run() -> list[dict[str, object]]:
        async with database(settings(), migrate=False) as db, db.reader() as session:
            return [d.to_dict() for d in await list_devices(session)]

    devices = arun(run())
    if as_json:
        print_json(devices)
        return
    for d in devices:
        live = ", ".join(str(k) for k in d["live_keys"]) or "none"  # type: ignore[attr-defined]
        print(f"{d['id']}\t{d['state']}\t{d['name']}\tkeys: {live}")


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(
        help="Sensor devices and their signing keys. A secret is printed once, as JSON.",
        no_args_is_help=True,
    )
    commands.command("create")(create)
    commands.command("rotate")(rotate)
    commands.command("revoke")(revoke)
    commands.command("list")(listing)
    return commands
