"""Catalog records and states (no I/O)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

HOT, ON_DISK, LOADING, SLEEPING, FAILED = "hot", "on_disk", "loading", "sleeping", "failed"
STATES = (HOT, ON_DISK, LOADING, SLEEPING, FAILED)
# how a node is, as the router acts on it: spill when busy, wait when loading, wake when sleeping, fail over when down
OK, BUSY, NODE_LOADING, NODE_SLEEPING, DOWN = "ok", "busy", "loading", "sleeping", "down"


@dataclass(slots=True)
class ModelInfo:
    name: str
    state: str = ON_DISK
    size_mb: int = 0                 # observed (engine's figure); 0 unknown
    instance: Optional[str] = None   # LM Studio's instance id, for unload


@dataclass(slots=True)
class EngineLoad:
    """An engine's own load figures and when they were read."""
    waiting: int = 0
    running: int = 0
    kv_usage: Optional[float] = None  # 0..1
    at: float = field(default_factory=time.monotonic)

    def fresh(self, stale_s: float, now: Optional[float] = None) -> bool:
        return ((now if now is not None else time.monotonic()) - self.at) <= stale_s


@dataclass(slots=True)
class NodeView:
    """What placement and eviction read about one route (a plain copy: the pure functions never see live state)."""
    route: str
    healthy: bool = True
    drained: bool = False
    residency: str = "pinned"
    models: dict = field(default_factory=dict)      # name -> ModelInfo
    in_flight: int = 0                              # the router's own count
    capacity: int = 1                               # max_concurrency
    engine: Optional[EngineLoad] = None             # None or stale: use in_flight
    max_resident: int = 0
    vram_mb: int = 0
    model_in_flight: dict = field(default_factory=dict)   # name -> requests in flight
    last_used: dict = field(default_factory=dict)         # name -> monotonic time
    group_busy: bool = False                        # another engine of its gpu_group is resident
    agent_vram: Optional[tuple] = None              # (used_mb, total_mb, reported_at wall time) from the node agent
    vram_used_mb: Optional[int] = None              # the card's measured use (fresh agent figures); None: learned

    def resident(self) -> list:
        return [m for m in self.models.values() if m.state in (HOT, LOADING)]

    def used_mb(self) -> int:
        if self.vram_used_mb is not None:
            return self.vram_used_mb
        return sum(m.size_mb for m in self.resident())
