"""The `gridflow` command: one module a command group, the work itself in the services the API
shares. Exit codes: 0 done, 1 a failure (a check failed, a service unreachable), 2 bad input
(an unknown option, an unreadable or invalid file, a missing secret)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. The command tree is imported here, not before."""
    from app.cli.root import run

    return run(argv)
