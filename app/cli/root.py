"""The command tree and how a command's outcome becomes an exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import typer
from sqlalchemy.exc import ArgumentError

from app.cli import (
    audit,
    db,
    demo,
    devices,
    doctor,
    grids,
    kafka,
    policies,
    serve,
    stats,
    tokens,
)
from app.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, CliError
from app.platform import logs
from app.platform.errors import AppError
from app.platform.settings import Settings

log = logging.getLogger("gridflow.cli")

HELP = """gridflow: reports, grid cells, cases, dispatch, SLA clocks and live progress.

Exit codes: 0 done, 1 a failure (a check failed, a service is unreachable), 2 bad input."""


def build() -> typer.Typer:
    root = typer.Typer(
        name="gridflow",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    serve.register(root)
    doctor.register(root)
    demo.register(root)
    root.add_typer(tokens.group(), name="token")
    root.add_typer(devices.group(), name="device")
    root.add_typer(db.group(), name="db")
    root.add_typer(grids.group(), name="grids")
    root.add_typer(policies.group(), name="policies")
    root.add_typer(audit.group(), name="audit")
    root.add_typer(stats.group(), name="stats")
    root.add_typer(kafka.group(), name="kafka")
    return root


def command_for(argv: Sequence[str]) -> Any:
    """The command `argv` names, its options parsed and converted but nothing run; raises
    (a usage error, exit code 2) if the line is wrong. Deploy manifests are checked with it."""
    command: Any = typer.main.get_command(build())
    args = list(argv)
    path = ["gridflow"]
    while getattr(command, "commands", None) is not None:
        if not args or args[0] not in command.commands:
            raise CliError(f"{' '.join(path)}: no command {args[0] if args else ''!r}")
        path.append(args[0])
        command = command.commands[args.pop(0)]
    command.make_context(" ".join(path), args)
    return command


def _problem_lines(extra: dict[str, Any]) -> list[str]:
    return [
        f"{p.get('kind') or p.get('at')}: {p.get('message')}"
        for p in extra.get("problems", [])
        if isinstance(p, dict)
    ]


def _fail(message: str, details: Sequence[str] = ()) -> None:
    print(f"gridflow: {message}", file=sys.stderr)
    for line in details:
        print(f"  - {line}", file=sys.stderr)


def _configure_logging() -> None:
    """gridflow's logging (app/platform/logs.py) as the settings say; a setting that does not
    parse is reported by the command itself, so defaults meanwhile."""
    try:
        s = Settings()
    except ValueError:
        logs.configure()
        return
    logs.configure(fmt=s.log.format, level=s.log.level, development=s.env == "development")


def run(argv: Sequence[str] | None = None) -> int:
    _configure_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Standalone: usage errors are shown with the command's help hint and end as
        # SystemExit(2), --help as SystemExit(0); anything else raised reaches the handlers.
        build()(args=args, prog_name="gridflow")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CliError as exc:
        _fail(exc.message, exc.details)
        return exc.code
    except AppError as exc:
        _fail(exc.detail, _problem_lines(exc.extra))
        return EXIT_BAD_INPUT if exc.status < 500 else EXIT_FAILURE
    except (ValueError, ArgumentError) as exc:  # settings refused: a short secret, a bad URL
        _fail(str(exc))
        return EXIT_BAD_INPUT
    except Exception as exc:  # a database or broker away, or a bug: one line, and the log
        log.debug("the command failed", exc_info=exc)
        _fail(f"failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    return 0
