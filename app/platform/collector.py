"""Python's cyclic garbage collector, sized for a server that holds many open connections.

A full collection (generation 2) stops the event loop while it walks every tracked object, and
every open live stream (SSE, the WebSocket feed, a waiting long poll) keeps a few hundred of
them: with 10,000 residents following their reports a full collection walked 2.5 million
objects and stood still for one to two seconds; every offer due meanwhile waited as long
(`docs/PERFORMANCE.md`, the live feed's followers). CPython starts a full collection once the
objects that survived the young generations since the last one reach a quarter of those it kept
then, so a server with many connections keeps paying for walking the same long-lived objects.

`FreezeSurvivors` changes that in the long-running commands (`serve`, `api`, `dispatcher`):
right after each full collection, whatever survived it (only live objects: the garbage was
just collected) is moved out of the collector's walks with `gc.freeze()`, so the next full
collection walks only what is newer. Frozen objects freed by reference counting are freed as
always; frozen ones that die in a reference cycle stay until the next whole collection. That
one comes when the frozen set has grown to `regrow` times its size after the last whole
collection: then the survivors are unfrozen and the next full collection walks everything
(one long pause, as often as the live set doubles, not every few seconds), which bounds what
cycles can hold on to. The frozen set is counted as it is frozen, and its real size (a walk of
its own) read only when that count says it may have grown so far. `gridflow_gc_pause_seconds`
shows the pauses. Off with `GRIDFLOW_GC_FREEZE=false`.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


class FreezeSurvivors:
    def __init__(self, regrow: float = 2.0) -> None:
        if regrow <= 1:
            raise ValueError("regrow must be above 1")
        self.regrow = regrow
        self.whole_at = 0  # the frozen count after the last whole collection (0: before one)
        self.frozen = 0  # objects frozen since (some since freed: reference counting frees
        # frozen objects too, uncounted)
        self.whole_collections = 0
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._callback)
            self.installed = True

    def uninstall(self) -> None:
        """Back to CPython's own policy: nothing frozen any more."""
        if self.installed:
            gc.callbacks.remove(self._callback)
            self.installed = False
        gc.unfreeze()
        self.whole_at = self.frozen = 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        # Counted as they are frozen: gc.get_freeze_count() walks the whole frozen list (as
        # long as a quarter of a full collection of it), so it is asked only when this count,
        # which misses what reference counting freed since, says the set may have grown enough.
        self.frozen += len(gc.get_objects(generation=2))
        if self.whole_at and self.frozen > self.regrow * self.whole_at:
            self.frozen = gc.get_freeze_count() + len(gc.get_objects(generation=2))
            if self.frozen > self.regrow * self.whole_at:
                # The next full collection walks everything, and freezes what survives it.
                gc.unfreeze()
                self.whole_at = self.frozen = 0
                return
        gc.freeze()
        if not self.whole_at:
            self.whole_at = self.frozen
            self.whole_collections += 1


policy = FreezeSurvivors()


def tune(enabled: bool) -> None:
    """The collector policy of a long-running command (its process, once)."""
    if enabled:
        policy.install()
