"""What the engine's functions need besides a session: time, grids and the SLA settings."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.clock import Clock
from app.core.grids import LiveGrids
from app.core.settings import SlaSettings


@dataclass(frozen=True)
class DispatchContext:
    clock: Clock
    grids: LiveGrids
    sla: SlaSettings
