"""Logs a log platform can index: one JSON object a line, with what is known of the work at hand.

Every line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, and, when known, the
fields of `CONTEXT_FIELDS`: the request id (taken from `X-Request-ID` or made up, and returned
in the answer), the principal's role (never a token, a subject or personal data), the case and
event being worked, and the Kafka partition and offset of the message in hand. They come from
`bind()` (a context variable, so each request and each message has its own) or from a log call's
`extra=`. A traceback rides in `exc`. Credentials are blanked (app/platform/redact.py) in the
message and the traceback alike.

On a terminal in development the same lines are printed for people instead:
`12:00:01.234 INFO gridflow.x: message  request_id=… case_id=…`.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TextIO

from app.platform.redact import RedactCredentials, redact

CONTEXT_FIELDS = ("request_id", "role", "case_id", "event_id", "partition", "offset")
# Libraries that are noisy at info, or print data (SQL parameters, WebSocket frames) at debug.
QUIET = {
    name: logging.WARNING
    for name in ("alembic", "httpx", "httpcore", "aiokafka", "aiosqlite", "websockets", "asyncio")
}

_NOTHING: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("gridflow_log_context", default=_NOTHING)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields (of CONTEXT_FIELDS; None ones are left out) to every line logged inside the
    block, in this task and the tasks it starts."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind_here(**fields: Any) -> None:
    """Like `bind` for the rest of the current context (a request's dependency, whose context
    ends with the request)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    found = dict(_context.get())
    for name in CONTEXT_FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            found[name] = value
    return found


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            **context_of(record),
        }
        if record.exc_info:
            line["exc"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(line, ensure_ascii=False, default=str)


class PeopleLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        text = f"{at} {record.levelname} {record.name}: {redact(record.getMessage())}"
        fields = context_of(record)
        if fields:
            text += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + redact("".join(traceback.format_exception(*record.exc_info))).rstrip()
        return text


class _Ours(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs (and replaces when called again). Given no stream, it
    writes to whatever `sys.stderr` is at each line (a test runner swaps it per test)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow:
            self.stream = sys.stderr
        super().emit(record)


def configure(
    *,
    fmt: Literal["auto", "json", "text"] = "auto",
    level: str = "info",
    development: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Send every log line to `stream` (standard error) as JSON, or as text for people when
    `fmt` is "text", or "auto" on a terminal in development. Idempotent: a second call replaces
    the first's handler and keeps any other (a test's, say)."""
    out = stream if stream is not None else sys.stderr
    people = fmt == "text" or (fmt == "auto" and development and out.isatty())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Ours)]:
        root.removeHandler(old)
    handler = _Ours(stream)
    handler.setFormatter(PeopleLines() if people else JsonLines())
    handler.addFilter(RedactCredentials())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # Our handler on the root, not uvicorn's own: its lines come out like everyone's. A
        # logger uvicorn silenced (no handler, not propagating: `--access-log` not given, in
        # a worker process that set up logging before the app) stays silent.
        uv = logging.getLogger(name)
        if uv.handlers:
            uv.handlers.clear()
            uv.propagate = True


def configured() -> bool:
    return any(isinstance(h, _Ours) for h in logging.getLogger().handlers)
