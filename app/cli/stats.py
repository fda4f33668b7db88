"""`gridflow stats`: the centre's figures (app/cases/stats.py, docs/STATS.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from app.cli.common import CliError, arun, database, note, print_json, settings
from app.cli.progress import progress

MAX_SPAN = timedelta(days=366)


def export(
    start: Annotated[
        datetime | None,
        typer.Option(
            "--from", help="first day or moment (UTC unless it says); default 30 days ago"
        ),
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", help="end, not included; default now")
    ] = None,
    by: Annotated[
        Literal["grid", "street", "department", "category"] | None,
        typer.Option(help="one row a grid, street, department or category"),
    ] = None,
    fmt: Annotated[Literal["csv", "json"], typer.Option("--format")] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", help="write to this file (default: standard output)")
    ] = None,
) -> None:
    """Export the figures of the cases opened in [from, to): in total and by group.

    The same figures as GET /v1/stats, read straight from the database.

    Example: gridflow stats export --from 2026-11-01 --to 2026-12-01 --by street --out nov.csv
    """
    from app.cases import stats
    from app.gridsets.store import LiveGrids

    finish = _aware(end) if end else datetime.now(UTC)
    begin = _aware(start) if start else finish - timedelta(days=30)
    if not begin < finish or finish - begin > MAX_SPAN:
        raise CliError("--from must be before --to, at most 366 days apart")
    s = settings()

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with database(s) as db:
            grids = LiveGrids(snap_m=s.geo.snap_m)
            await grids.refresh(db)
            async with db.reader() as session:
                with progress() as told:
                    return await stats.compute(
                        session, start=begin, end=finish, by=by, index=grids.index, progress=told
                    )

    groups, total = arun(run())
    if fmt == "csv":
        text = stats.to_csv(groups, total)
    else:
        body = {"from": begin, "to": finish, "by": by, "groups": groups, "total": total}
        if out is None:
            print_json(body)
            return
        import json

        text = json.dumps(body, ensure_ascii=False, indent=2, default=str) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text, encoding="utf-8")
        note(f"{total['received']} cases, {len(groups)} groups written to {out}")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="The centre's figures.", no_args_is_help=True)
    commands.command("export")(export)
    return commands
