"""`gridflow doctor`: one line a check (app/doctor/checks.py)."""

from __future__ import annotations

import typer

from app.cli.common import EXIT_FAILURE, JSON_OPTION, arun, print_json, settings

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def doctor(as_json: bool = JSON_OPTION) -> None:
    """Check that this installation is fit to run; exit 1 only if a check fails.

    Checks the settings, the database, Kafka, the live grid set and who is on duty, the
    policies, the city's calendar and the clocks: one line a check, warnings marked. Safe on a
    running system: it only reads.

    Example: gridflow doctor --json
    """
    from app.doctor import Status, examine

    s = settings()
    findings = arun(examine(s))
    if as_json:
        print_json([f.to_dict() for f in findings])
    else:
        for f in findings:
            print(f"{MARK[f.status.value]}  {f.check:<9} {f.message}")
    if any(f.status is Status.FAIL for f in findings):
        raise typer.Exit(EXIT_FAILURE)


def register(root: typer.Typer) -> None:
    root.command()(doctor)
