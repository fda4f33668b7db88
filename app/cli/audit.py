"""`gridflow audit`: the tamper-evident case history (app/cases/audit.py)."""

from __future__ import annotations

import typer

from app.cli.common import EXIT_FAILURE, JSON_OPTION, arun, database, print_json, settings
from app.cli.progress import progress


def verify(as_json: bool = JSON_OPTION) -> None:
    """Check every case's chain of events.

    Exits 1 if any event was changed, removed or reordered.

    Example: gridflow audit verify --json
    """
    from app.cases.audit import describe
    from app.cases.audit import verify as check

    s = settings()

    async def run() -> dict[str, object]:
        async with database(s, migrate=False) as db, db.reader() as session:
            with progress() as told:
                result = await check(session, s.audit_key(), told)
        return describe(result)

    report = arun(run())
    problems: list[dict[str, str]] = report["problems"]  # type: ignore[assignment]
    if as_json:
        print_json(report)
    else:
        for problem in problems:
            print(f"{problem['kind']}: {problem['message']}")
        verdict = "intact" if not problems else f"{len(problems)} problem(s)"
        print(f"gridflow: {report['cases']} cases, {report['events']} events checked: {verdict}")
    if problems:
        raise typer.Exit(EXIT_FAILURE)


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="The tamper-evident case history.", no_args_is_help=True)
    commands.command("verify")(verify)
    return commands
