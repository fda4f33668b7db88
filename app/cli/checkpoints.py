"""`gridflow audit checkpoint | checkpoints | export`: signed checkpoints of every case's chain
head (app/cases/checkpoints.py). `gridflow audit verify` checks them (app/cli/audit.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import (
    EXIT_FAILURE,
    JSON_OPTION,
    CliError,
    arun,
    database,
    dumps,
    note,
    print_json,
    read_json,
    settings,
)


def checkpoint(as_json: bool = JSON_OPTION) -> None:
    """Take a signed checkpoint of every case's chain head now.

    Dispatchers take one every audit.checkpoint_interval_s by themselves; this one is taken
    at once. Exits 1 if cases vanished or were rolled back since the previous checkpoint, or
    its leaves were changed (recorded in this one).

    Example: gridflow audit checkpoint --json
    """
    from app.cases.checkpoint_take import take
    from app.cases.checkpoint_verify import summary
    from app.cases.checkpoints import CheckpointKey

    s = settings()

    async def run() -> dict[str, Any]:
        async with database(s) as db:
            cp = await take(
                db,
                CheckpointKey(s.audit_key()),
                datetime.now(UTC),
                keep_leaves=s.audit.checkpoint_keep_leaves,
            )
        if cp is None:
            raise CliError("other checkpoints kept being taken meanwhile; try again", EXIT_FAILURE)
        return summary(cp) | {"faults": cp.faults}

    taken = arun(run())
    if as_json:
        print_json(taken)
    else:
        print(
            f"gridflow: checkpoint {taken['id']}: {taken['cases']} cases, "
            f"{taken['events']} events, root {taken['root']}"
        )
        if taken["vanished"] or taken["rolled_back"]:
            print(
                f"gridflow: since the previous one {taken['vanished']} case(s) vanished and "
                f"{taken['rolled_back']} were rolled back (gridflow audit verify names them)"
            )
        for fault in taken["faults"]:
            if "message" in fault:
                print(f"gridflow: {fault['message']}")
    if taken["faults"] or taken["vanished"] or taken["rolled_back"]:
        raise typer.Exit(EXIT_FAILURE)


def checkpoints(as_json: bool = JSON_OPTION) -> None:
    """List the checkpoints taken, oldest first, and whether their leaves are still kept.

    Example: gridflow audit checkpoints
    """
    from app.cases.checkpoint_verify import list_checkpoints

    s = settings()

    async def run() -> list[dict[str, Any]]:
        async with database(s, migrate=False) as db:
            return await list_checkpoints(db)

    rows = arun(run())
    if as_json:
        print_json(rows)
        return
    for row in rows:
        faults = row["vanished"] + row["rolled_back"]
        print(
            f"{row['id']:>6}  {row['taken_at']}  {row['cases']:>9} cases  {row['root'][:16]}…"
            f"  {'leaves kept' if row['leaves_kept'] else 'root only'}"
            + (f"  {faults} FAULT(S)" if faults else "")
        )
    if not rows:
        note("no checkpoint yet (gridflow audit checkpoint takes one)")


def export(
    checkpoint_id: Annotated[
        int | None, typer.Option("--checkpoint", help="its number; default the newest")
    ] = None,
    leaves: Annotated[
        bool,
        typer.Option("--leaves", help="include every case's leaf (about 110 bytes a case in JSON)"),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="write to this file (default: standard output)")
    ] = None,
) -> None:
    """Write a checkpoint as JSON to keep outside gridflow: its signed statement (time,
    counts, Merkle root, the previous checkpoint's digest), signature and public key.

    Check it later with `gridflow audit verify --anchor FILE`; with --leaves it names every
    case deleted or rolled back since, even if the database's own checkpoints were rewritten.

    Example: gridflow audit export --out checkpoint.json
    """
    from app.cases.checkpoint_verify import export as build
    from app.cases.checkpoints import CheckpointKey

    s = settings()

    async def run() -> dict[str, Any]:
        async with database(s, migrate=False) as db:
            try:
                return await build(
                    db, CheckpointKey(s.audit_key()), checkpoint_id, with_leaves=leaves
                )
            except LookupError as exc:
                raise CliError(str(exc)) from exc

    document = arun(run())
    text = dumps(document) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text, encoding="utf-8")
        st = document["statement"]
        note(f"checkpoint {st['id']} ({st['cases']} cases, root {st['root']}) written to {out}")


def read_anchor(anchor: Path | None) -> Any:
    """An exported checkpoint given to `gridflow audit verify --anchor`, read before any
    work: a file that is not one is bad input."""
    if anchor is None:
        return None
    from app.cases.checkpoint_verify import parse_export

    document = read_json(anchor)
    try:
        parse_export(document)
    except ValueError as exc:
        raise CliError(f"{anchor}: {exc}") from exc
    return document


def check(
    anchor: Path | None, document: Any, told: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """For `gridflow audit verify`: the checkpoints' problems and a summary, with the
    anchor's when one is given."""
    from app.cases.checkpoint_verify import verify_anchor, verify_checkpoints
    from app.cases.checkpoints import CheckpointKey

    s = settings()

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        key = CheckpointKey(s.audit_key())
        async with database(s, migrate=False) as db:
            report = await verify_checkpoints(db, key, told)
            summary: dict[str, Any] = {
                "count": report.checkpoints,
                "newest": report.newest,
                "cases_checked": report.cases_checked,
            }
            problems = report.problems
            if document is not None:
                checked, found = await verify_anchor(db, key, document, told)
                summary["anchor"] = {"file": str(anchor), "cases_checked": checked}
                problems = problems + found
        return [p.as_dict() for p in problems], summary

    return arun(run())


def register(commands: typer.Typer) -> None:
    commands.command("checkpoint")(checkpoint)
    commands.command("checkpoints")(checkpoints)
    commands.command("export")(export)


def summary(checked: Any) -> str:
    """The checkpoints' part of `gridflow audit verify`'s last line."""
    if not checked["count"]:
        return "no checkpoint"
    text = f"{checked['count']} checkpoint(s) (newest {checked['newest']})"
    if "anchor" in checked:
        text += f", the anchor {checked['anchor']['file']}"
    return text
