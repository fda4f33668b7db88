"""Credentials never reach a log: a filter that blanks them in every URL a log line carries.

Access logs (and uvicorn's WebSocket lines) print the request target with its query. A client
should never put a credential there (streams take single-use tickets, app/auth/tickets.py), but
one that does must not leave it in the logs: the values of `token`, `ticket`, `access_token`,
`api_key`, `key`, `secret`, `password` and `signature` query parameters, and anything after
`Bearer `, are replaced by `[redacted]`. So are `lat` and `lon`: a resident's app locating
itself (`/v1/grids/locate`) would otherwise leave a precise position beside its address.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_QUERY = re.compile(
    r"(?i)([?&](?:token|ticket|access_token|api_key|key|secret|password|signature|lat|lon)=)"
    r"[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "gridflow")


def redact(text: str) -> str:
    return _BEARER.sub(rf"\1{REDACTED}", _QUERY.sub(rf"\1{REDACTED}", text))


class RedactCredentials(logging.Filter):
    """Blanks credentials in a record's message and in each of its string arguments, keeping
    the arguments' shape: formatters such as uvicorn's access formatter read them one by one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install() -> None:
    """Add the filter to the loggers that print requests, and to every handler of the root
    logger (records of other loggers pass through those); idempotent."""
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in LOGGERS]
    targets += logging.getLogger().handlers
    for name in LOGGERS:
        targets += logging.getLogger(name).handlers
    for target in targets:
        if not any(isinstance(f, RedactCredentials) for f in target.filters):
            target.addFilter(RedactCredentials())
