"""`gridflow grids`: grid sets from GeoJSON (app/gridsets/store.py does the work)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import (
    EXIT_BAD_INPUT,
    JSON_OPTION,
    arun,
    database,
    note,
    print_json,
    read_json,
    settings,
)
from app.cli.progress import progress

FILE = typer.Argument(help="a GeoJSON FeatureCollection, one Feature per grid")
ALLOW_GAPS = typer.Option(help="accept gaps inside the service area (reported as warnings)")


def _say_warnings(body: dict[str, Any]) -> None:
    for warning in body.get("warnings", []):
        note(f"warning: {warning['message']}")


def validate(
    file: Annotated[Path, FILE],
    allow_gaps: Annotated[bool, ALLOW_GAPS] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a grid set without storing it.

    Exits 2 with every problem listed if it is invalid (with --json, the report on standard
    output).

    Example: gridflow grids validate city.geojson --json
    """
    from app.gridsets.store import InvalidGridSet, check_grid_set, import_rules

    collection = read_json(file)
    rules = import_rules(settings().geo, allow_gaps=allow_gaps)
    try:
        with progress() as told:
            report = arun(check_grid_set(collection, rules, told))
    except InvalidGridSet as exc:
        if not as_json:
            raise
        print_json({"valid": False, **exc.extra})
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    body = report.to_dict()
    if as_json:
        print_json(body)
        return
    _say_warnings(body)
    print(f"gridflow: {file}: valid, {body['grids']} grids ({body['units']} unit grids)")


def import_(
    file: Annotated[Path, FILE],
    allow_gaps: Annotated[bool, ALLOW_GAPS] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate a grid set and store it as the new live version.

    Nothing is stored if it is invalid (exit 2, every problem listed). Running servers swap it
    in within geo.reload_interval_s.

    Example: gridflow grids import city.geojson
    """
    from app.gridsets.store import import_grid_set, import_rules

    collection = read_json(file)
    s = settings()
    rules = import_rules(s.geo, allow_gaps=allow_gaps)

    async def run() -> dict[str, Any]:
        async with database(s) as db:
            with progress() as told:
                done = await import_grid_set(
                    db,
                    None,
                    collection,
                    rules,
                    source=file.name,
                    now=datetime.now(UTC),
                    progress=told,
                )
        return {**done.to_dict(), "warnings": [w.to_dict() for w in done.report.warnings]}

    body = arun(run())
    if as_json:
        print_json(body)
        return
    _say_warnings(body)
    print(
        f"gridflow: imported {body['grids']} grids ({body['units']} unit grids) as version "
        f"{body['version']}; running servers swap it in within {s.geo.reload_interval_s:g} s"
    )


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(
        help="Grid sets (GeoJSON FeatureCollections of management grids).", no_args_is_help=True
    )
    commands.command("validate")(validate)
    commands.command("import")(import_)
    return commands
