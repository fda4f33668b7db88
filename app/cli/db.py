"""`gridflow db`: the database schema."""

from __future__ import annotations

import typer

from app.cli.common import arun, database, redact_url, settings


def upgrade() -> None:
    """Apply the migrations that have not run yet (safe to run again).

    Example: GRIDFLOW_DB__URL=postgresql+asyncpg://gridflow@db/gridflow gridflow db upgrade
    """
    s = settings()

    async def run() -> None:
        async with database(s):  # entering it migrates to head
            print(f"gridflow: database at head ({redact_url(s.database_url)})")

    arun(run())


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="The database.", no_args_is_help=True)
    commands.command("upgrade")(upgrade)
    return commands
