"""`gridflow stats`: the centre's figures (app/cases/stats.py, docs/STATS.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import typer

from app.cli.common import CliError, arun, database, dumps, note, settings
from app.cli.progress import progress


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

    The same figures as GET /v1/stats, read straight from the database. A date or time
    without a zone is the city's (sla.calendar.timezone).

    Example: gridflow stats export --from 2026-11-01 --to 2026-12-01 --by street --out nov.csv
    """
    from app.cases import stats
    from app.gridsets.store import LiveGrids
    from app.platform.errors import ValidationFailed

    s = settings()
    city = ZoneInfo(s.sla.calendar.timezone)
    finish = _aware(end, city) if end else datetime.now(UTC)
    begin = _aware(start, city) if start else finish - timedelta(days=30)
    try:
        stats.check_range(begin, finish)
    except ValidationFailed as exc:
        raise CliError("--from must be before --to, at most 366 days apart") from exc

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with database(s, migrate=False) as db:
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
        text = dumps(body) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text, encoding="utf-8")
        note(f"{total['received']} cases, {len(groups)} groups written to {out}")


def _aware(moment: datetime, city: ZoneInfo) -> datetime:
    """A moment given without a zone is the city's (a day starts at the city's midnight)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=city)


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="The centre's figures.", no_args_is_help=True)
    commands.command("export")(export)
    return commands
