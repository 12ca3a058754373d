"""A stale node's routes are drained by the hub, and undrained when the node beats again.

The hub's drain is a flag of its own on the route (`RouteState.hub_drained`, the node's name), apart from an
operator's drain (`RouteState.drained`): auto-routing skips a route with either (`Runtime.refresh_drained`), an
operator's undrain leaves the hub's drain alone and the hub's undrain never lifts an operator's drain. Route pins
still pass, as with every drain. Hub drains are not persisted: after a restart they are derived again, once the
agents had one `stale_after_s` to resync (so a hub restart does not drain the whole cluster for a few seconds).

`plan` is the decision, a pure function; `Hub.apply_drains` (service.py) applies it and writes the events
`hub_drain` / `hub_undrain`. Off with `hub.drain_stale_routes: false` (then every hub drain is lifted).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional


def offline(rec: Optional[Mapping], now: float, stale_after_s: float, started_at: float) -> bool:
    """A node that reported at least once and is not beating: not healthy, and silent past the grace counted from
    its last heartbeat or from the hub's start, whichever is later. A node that never reported is not drained for
    (its agent may not be deployed yet; the route's own health probe still covers a dead engine)."""
    if not rec or rec.get("state") == "healthy":
        return False
    return now - max(float(rec.get("last_seen") or 0.0), started_at) > stale_after_s


def plan(enabled: bool, nodes: Mapping[str, Mapping], routes_of: Callable[[str], Iterable[str]],
         routes: Iterable[str], current: Mapping[str, str], now: float, stale_after_s: float,
         started_at: float) -> tuple[dict, dict]:
    """-> (drain, undrain): route -> node. A route is drained when every node that serves it is offline (two nodes
    serving one route: it stays in service while one of them beats); `current` is the hub's drains now."""
    known = set(routes)
    want: dict[str, str] = {}
    if enabled:
        serving: dict[str, list] = {}
        for name in sorted(nodes):
            for r in routes_of(name):
                if r in known:
                    serving.setdefault(r, []).append(name)
        for r, names in serving.items():
            down = [n for n in names if offline(nodes.get(n), now, stale_after_s, started_at)]
            if down and len(down) == len(names):
                want[r] = down[0]
    drain = {r: n for r, n in want.items() if current.get(r) != n}
    undrain = {r: n for r, n in current.items() if r not in want}
    return drain, undrain
