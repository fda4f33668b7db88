"""Progress of long work: a bar on a terminal, plain lines in a log or a pipe.

A piece of work reports `(stage, done, total)` through a `geo.Progress` callback, from the event
loop or from a worker thread; it goes to standard error so that standard output stays the
command's result.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from geo import Progress

PLAIN_EVERY_S = 5.0  # a plain line at least this often while a stage moves
PLAIN_STEP = 0.1  # and at every tenth of a stage


class _Lines:
    """Plain progress lines: a stage's start, every tenth, at most every few seconds, its end."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._stage: str | None = None
        self._finished = False
        self._shown = 0.0
        self._at = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            now = time.monotonic()
            share = min(done / total, 1.0) if total > 0 else 1.0
            if stage != self._stage:
                self._stage, self._finished = stage, False
            elif self._finished or (
                done < total and share < self._shown + PLAIN_STEP and now - self._at < PLAIN_EVERY_S
            ):
                return
            self._finished = done >= total
            self._shown, self._at = share, now
            self._stream.write(f"gridflow: {stage}: {done}/{total} ({share:.0%})\n")
            self._stream.flush()


@contextmanager
def progress(stream: TextIO | None = None, *, bar: bool | None = None) -> Iterator[Progress]:
    """A progress callback for the length of the block: a Rich bar when `stream` (standard
    error by default) is a terminal, plain lines otherwise."""
    out = stream if stream is not None else sys.stderr
    if not (out.isatty() if bar is None else bar):
        yield _Lines(out)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    tasks: dict[str, TaskID] = {}
    with Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=out),
        # Lines the command prints go above the bar only when they would share its terminal:
        # `gridflow demo > out.txt` keeps them in the file.
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    ) as bars:

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield report
