"""`gridflow audit`: the tamper-evident case history (app/cases/audit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli import checkpoints
from app.cli.common import EXIT_FAILURE, JSON_OPTION, arun, database, print_json, settings
from app.cli.progress import progress


def verify(
    as_json: bool = JSON_OPTION,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor", help="also check a checkpoint exported by `gridflow audit export`"
        ),
    ] = None,
) -> None:
    """Check every case's chain of events, and the signed checkpoints of their heads.

    Exits 1 if any event was changed, removed or reordered, or a case vanished or was rolled
    back since a checkpoint, or a checkpoint was changed or removed.

    Example: gridflow audit verify --anchor checkpoint.json
    """
    from app.cases.audit import describe
    from app.cases.audit import verify as check

    s = settings()
    document = checkpoints.read_anchor(anchor)

    async def run() -> dict[str, object]:
        async with database(s, migrate=False) as db, db.reader() as session:
            with progress() as told:
                result = await check(session, s.audit_key(), told)
        return describe(result)

    report = arun(run())
    with progress() as told:
        found, report["checkpoints"] = checkpoints.check(anchor, document, told)
    problems: list[dict[str, object]] = report["problems"]  # type: ignore[assignment]
    problems += found
    if as_json:
        print_json(report)
    else:
        for problem in problems:
            print(f"{problem['kind']}: {problem['message']}")
        verdict = "intact" if not problems else f"{len(problems)} problem(s)"
        print(
            f"gridflow: {report['cases']} cases, {report['events']} events, "
            f"{checkpoints.summary(report['checkpoints'])} checked: {verdict}"
        )
    if problems:
        raise typer.Exit(EXIT_FAILURE)


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="The tamper-evident case history.", no_args_is_help=True)
    commands.command("verify")(verify)
    checkpoints.register(commands)
    return commands
