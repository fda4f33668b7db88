"""What every command shares: exit codes, errors, settings, the database, JSON output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer

from app.platform.db import Database
from app.platform.settings import Settings

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed: a check, a service, the work itself
EXIT_BAD_INPUT = 2  # the command line, a file or the settings are wrong

T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="print the result as JSON (for scripts)")


class CliError(Exception):
    """Ends a command with a message on standard error and an exit code (2 unless told)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT, details: Iterable[str] = ()):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = list(details)


def settings() -> Settings:
    """The settings from the environment, read when a command runs (never at import)."""
    return Settings()


def arun(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


@asynccontextmanager
async def database(s: Settings, *, migrate: bool = True) -> AsyncIterator[Database]:
    """The configured database, disposed of afterwards. Commands that write migrate it to head
    first (as `gridflow db upgrade`); commands that only read leave its schema alone."""
    # A migration may reseal the case histories (0017): it needs their key. Read-only commands
    # leave the schema alone, and so never read or create a secret for it.
    db = Database(s.database_url, audit_key=s.audit_key() if migrate else None)
    try:
        if migrate:
            await db.upgrade()
        yield db
    finally:
        await db.dispose()


def read_json(path: Path) -> Any:
    """A JSON file's content; an unreadable file is bad input."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def dumps(value: Any) -> str:
    """JSON for people and scripts alike: indented, dates in ISO 8601."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=_plain)


def print_json(value: Any) -> None:
    print(dumps(value))


def note(message: str) -> None:
    """A line for the person at the terminal, on standard error (standard output is the
    command's result, which a script may read)."""
    print(f"gridflow: {message}", file=sys.stderr)


def redact_url(url: str) -> str:
    """A database or broker URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
