"""`gridflow policies`: the SLA policy document (docs/POLICIES.md; app/policies/document.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import JSON_OPTION, arun, database, print_json, read_json, settings
from app.cli.progress import progress


def load(
    file: Annotated[Path, typer.Argument(help="a policy document (JSON)")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate a policy document and store it.

    New clocks use it at once; nothing is stored if it has a problem (exit 2, each listed).

    Example: gridflow policies dump > policies.json && gridflow policies load policies.json
    """
    from app.policies import document as policies

    raw = read_json(file)

    async def run() -> dict[str, Any]:
        async with database(settings()) as db:
            with progress() as told:
                told("loading policies", 0, 2)
                async with db.transaction() as uow:
                    doc = await policies.validated(uow.session, raw)
                    told("loading policies", 1, 2)
                    stored = await policies.apply(uow.session, doc)
                told("loading policies", 2, 2)
        return {
            "policies": stored,
            "categories": len(doc.categories),
            "departments": len(doc.departments),
        }

    body = arun(run())
    if as_json:
        print_json(body)
        return
    print(
        f"gridflow: loaded {body['policies']} policies, {body['categories']} categories and "
        f"{body['departments']} departments from {file}; new clocks use them at once"
    )


def dump() -> None:
    """Print the stored policy document (JSON), ready to edit and load again.

    Example: gridflow policies dump > policies.json
    """
    from app.policies import document as policies

    async def run() -> Any:
        async with database(settings(), migrate=False) as db, db.reader() as session:
            doc = await policies.current(session)
        return doc.model_dump(mode="json")

    print_json(arun(run()))


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="SLA policies, categories and departments.", no_args_is_help=True)
    commands.command("load")(load)
    commands.command("dump")(dump)
    return commands
