"""Stopping within a bound: a shutdown step that overruns is abandoned with a warning.

Every step here is safe to abandon: a message's work is committed to the database before its
offset, an outbox row is marked sent only after Kafka acknowledged it, and a consumer that did
not say goodbye loses its partitions after the session timeout. So a process told to stop
stops, even when a broker or the database does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("gridflow.shutdown")


async def bounded(what: str, step: Awaitable[object], timeout_s: float) -> bool:
    """Await `step` for at most `timeout_s`; False (and a warning) if it was abandoned."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait([task], timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        task.result()  # its error, if any, is the caller's
        return True
    # Cancelled but not waited for: a step that ignores cancellation must not hold us here.
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    log.warning("stopping: %s took over %.0f s; abandoned", what, timeout_s)
    return False


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (None: nothing to stop)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
