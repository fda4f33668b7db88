"""`gridflow demo`: simulated residents, sensors and workers against a running server."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import arun, settings


def demo(
    url: Annotated[str, typer.Option(help="the server's base URL")] = "http://127.0.0.1:8000",
    cases: Annotated[int, typer.Option(min=1, help="resident reports to send")] = 8,
    timeout: Annotated[float, typer.Option(min=1, help="give up after (seconds)")] = 120.0,
) -> None:
    """Drive simulated residents, sensors and workers through whole cases.

    Exits 1 if a case does not close in time.

    Example: gridflow serve & gridflow demo --cases 8
    """
    from app.cli.progress import progress
    from app.demo import run_demo

    with progress() as told:
        code = arun(
            run_demo(settings(), base_url=url, cases=cases, timeout_s=timeout, progress=told)
        )
    if code:
        raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    root.command()(demo)
