"""The VRAM ledger's sources (pure functions, no I/O, no clock of their own).

A node agent (router_app/agent/homelab_agent.py) reports every card in its heartbeat, from
`nvidia-smi --query-gpu=index,...,memory.total,memory.used --format=csv,noheader,nounits` (MiB):

    {"gpus": [{"index": 0, "memory_total_mib": 24564, "memory_used_mib": 18012, ...}, ...]}

The hub (router_app/hub) keeps the last heartbeat of each node and the routes its engines serve. For a catalogued
route on such a node, the card's own figures are the ledger while they are fresh: capacity = memory.total, used =
memory.used (it counts what the router cannot see: other processes, the engine's KV cache and CUDA context). When the
agent is silent for longer than `catalog.stale_s`, or reports no usable card, the ledger falls back to the route's
configured `vram_mb` and the sizes learned from the engines (the sum over resident models).

    card_figures(gpus, cards)                      -> (used_mb, total_mb) over the selected cards, or None
    ledger(configured_mb, learned_used_mb, agent, now, stale_s)
                                                   -> (capacity_mb, used_mb, source)   source: "agent" | "learned"
"""
from __future__ import annotations

from typing import Optional, Sequence

AGENT, LEARNED = "agent", "learned"


def _mib(v) -> Optional[int]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        return None       # the agent sends None for "[N/A]" / "[Not Supported]"
    return int(v)


def card_figures(gpus, cards: Optional[Sequence[int]] = None) -> Optional[tuple]:
    """(used_mb, total_mb) summed over the cards whose `index` is in `cards` (None: every card of the node, e.g. an
    engine split over two cards). None when a selected card is missing or reports no memory figures: half a picture
    is not a ledger."""
    if not isinstance(gpus, list):
        return None
    by_index = {}
    for g in gpus:
        if isinstance(g, dict) and isinstance(g.get("index"), int) and not isinstance(g.get("index"), bool):
            by_index[g["index"]] = g
    chosen = list(by_index.values()) if cards is None else [by_index.get(i) for i in cards]
    if not chosen or any(g is None for g in chosen):
        return None
    used = total = 0
    for g in chosen:
        u, t = _mib(g.get("memory_used_mib")), _mib(g.get("memory_total_mib"))
        if u is None or not t:
            return None
        used, total = used + u, total + t
    return used, total


def ledger(configured_mb: int, learned_used_mb: int, agent: Optional[tuple], now: float,
           stale_s: float) -> tuple:
    """`agent`: (used_mb, total_mb, reported_at) from the node's last heartbeat (wall-clock seconds, like `now`), or
    None. Fresh agent figures win; otherwise the configured capacity and the learned sizes."""
    if agent is not None:
        used, total, at = agent
        if total > 0 and 0 <= now - at <= stale_s:
            return total, used, AGENT
    return configured_mb, learned_used_mb, LEARNED
