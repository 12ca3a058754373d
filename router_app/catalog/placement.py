"""Placement and eviction: pure functions over NodeViews (no I/O, no clock of their own: `now` is an argument).

place(model, nodes, ...) -> Placement
    A node that does not have the model, is down or drained, or cannot make room, is rejected with a reason.
    The others are scored, lowest first:  (state rank: hot < loading < sleeping < on disk,
    load: the engine's own queue + running over the route's cap when fresh, else the router's in-flight count,
    route name); evictions are planned for the best cold candidate first (a node that cannot make room is rejected)  -> a model on several nodes goes to the hot one, then the least loaded;
    a model too big for one node goes to a node with room.
plan_evictions(node, model, need_mb, ...) -> list | None
    What to unload so `model` fits under max_resident and the card's VRAM: cheapest to reload first (observed size),
    then the longest idle, then by name; never a model with requests in flight. None: no room can be made. The card's
    use is the agent's measured figure when the caller put one in `vram_used_mb`, else the learned sizes' sum.
idle_evictions(node, idle_ttl_s, now) -> list
    Resident models idle longer than the TTL and with nothing in flight.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from .model import FAILED, HOT, LOADING, ON_DISK, SLEEPING, NodeView

STATE_RANK = {HOT: 0, LOADING: 1, SLEEPING: 2, ON_DISK: 3}


@dataclass(slots=True)
class Placement:
    model: str
    choice: Optional[str] = None
    state: Optional[str] = None          # the model's state on the chosen node
    evict: list = field(default_factory=list)
    candidates: list = field(default_factory=list)   # [{route, state, score}] best first
    rejected: list = field(default_factory=list)     # [{route, why}]

    def to_dict(self) -> dict:
        return {"model": self.model, "choice": self.choice, "state": self.state, "evict": self.evict,
                "candidates": self.candidates, "rejected": self.rejected}


def node_load(node: NodeView, stale_s: float, now: float) -> float:
    e = node.engine
    if e is not None and e.fresh(stale_s, now):
        v = (e.waiting + e.running) / max(1, node.capacity)
        return v + (e.kv_usage or 0.0)
    return node.in_flight / max(1, node.capacity)


def plan_evictions(node: NodeView, model: str, need_mb: int, now: float) -> Optional[list]:
    resident = [m for m in node.models.values() if m.state in (HOT, LOADING) and m.name != model]
    count = len(resident) + 1
    if node.vram_used_mb is not None:     # the card's own figure (router_app/catalog/vram.py); it already counts
        used = node.vram_used_mb          # a model that is loading, so `model` itself is not added again
    else:
        used = sum(m.size_mb for m in resident)
    free = (node.vram_mb - used) if node.vram_mb else None
    if node.vram_mb and need_mb > node.vram_mb:
        return None
    evictable = sorted((m for m in resident if m.state == HOT and not node.model_in_flight.get(m.name)),
                       key=lambda m: (m.size_mb, node.last_used.get(m.name, 0.0), m.name))
    out = []
    for m in evictable:
        if (not node.max_resident or count <= node.max_resident) and (free is None or free >= need_mb):
            break
        out.append(m.name)
        count -= 1
        if free is not None:
            free += m.size_mb
    if (node.max_resident and count > node.max_resident) or (free is not None and free < need_mb):
        return None
    return out


def idle_evictions(node: NodeView, idle_ttl_s: float, now: float) -> list:
    if not idle_ttl_s or node.residency != "on_demand":
        return []
    return sorted(m.name for m in node.models.values()
                  if m.state == HOT and not node.model_in_flight.get(m.name)
                  and now - node.last_used.get(m.name, now) > idle_ttl_s)


def place(model: str, nodes: Iterable[NodeView], stale_s: float, now: float, need_mb: int = 0,
          allowed: Optional[frozenset] = None, full: bool = False, ignore_drain: bool = False) -> Placement:
    """Scores every node that has the model; plans evictions lazily, best candidate first, until one can make room
    (`full`: for every candidate, as `explain` shows them; `ignore_drain`: the route was already chosen, and a drain
    only stops auto-routing, so a pin to a drained route still gets its model loaded)."""
    p = Placement(model)
    scored = []
    for n in nodes:
        info = n.models.get(model)
        if info is None:
            p.rejected.append({"route": n.route, "why": "not installed"})
            continue
        if allowed is not None and n.route not in allowed:
            p.rejected.append({"route": n.route, "why": "this key may not use the route"})
            continue
        if not n.healthy:
            p.rejected.append({"route": n.route, "why": "down"})
            continue
        if n.drained and not ignore_drain:
            p.rejected.append({"route": n.route, "why": "drained"})
            continue
        state = info.state
        if state == FAILED:
            p.rejected.append({"route": n.route, "why": "the engine's last load of it failed"})
            continue
        if state not in (HOT, LOADING):
            if n.residency != "on_demand":
                p.rejected.append({"route": n.route, "why": f"{state} on a pinned engine (the router never loads "
                                                            "there)"})
                continue
            if n.group_busy:
                p.rejected.append({"route": n.route, "why": "its GPU is shared with an engine that is serving"})
                continue
        scored.append((STATE_RANK.get(state, 3), round(node_load(n, stale_s, now), 4), n.route, n, info))
    scored.sort(key=lambda x: x[:3])
    for rank, load, route, n, info in scored:
        evict: Optional[list] = []
        if rank >= STATE_RANK[SLEEPING] and (full or p.choice is None):
            evict = plan_evictions(n, model, info.size_mb or need_mb, now)
            if evict is None:
                p.rejected.append({"route": route, "why": "no room: too big for the card, or every resident "
                                                          "model has requests in flight"})
                continue
        elif rank >= STATE_RANK[SLEEPING]:
            evict = None          # not planned: a better candidate was chosen
        p.candidates.append({"route": route, "state": info.state, "score": [rank, load], "evict": evict})
        if p.choice is None:
            p.choice, p.state, p.evict = route, info.state, evict or []
    return p


def format_placement(p: Placement) -> str:
    lines = [f"model:    {p.model}", f"choice:   {p.choice or 'none'}" + (f"  ({p.state})" if p.state else "")]
    if p.evict:
        lines.append(f"evict:    {', '.join(p.evict)}")
    for c in p.candidates:
        ev = "" if not c["evict"] else f" evict={','.join(c['evict'])}"
        lines.append(f"  candidate {c['route']}: state={c['state']} score(state,load)={c['score']}{ev}")
    for r in p.rejected:
        lines.append(f"  rejected  {r['route']}: {r['why']}")
    return "\n".join(lines)
