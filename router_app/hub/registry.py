"""The node registry in memory (backed by the store): last heartbeat, health, cards, engines.

A node is `healthy` while heartbeats arrive, `stale` once none came for `stale_after_s`, and `unknown` when it is
configured but never reported. The store keeps the last heartbeat of each node, so a hub restart starts with the
registry it had (nodes come back `stale` until their agents resync).
"""
from __future__ import annotations

from typing import Optional

from .config import HubSettings

PERSIST_EVERY_S = 30.0   # a heartbeat is written to SQLite on join, on a state change, and at most this often
KEEP = ("agent_version", "hostname", "gpus", "cpu", "memory", "disk", "engines", "uptime_s", "errors",
        "infra_paths")


class Registry:
    def __init__(self, store, settings: HubSettings):
        self.store = store
        self.settings = settings
        self.nodes: dict[str, dict] = {}
        for name, rec in store.load_nodes().items():
            rec["state"] = "stale"        # nothing is known to be alive after a restart until it beats again
            self.nodes[name] = rec

    def beat(self, node: str, payload: dict, now: float) -> Optional[str]:
        """Records a heartbeat; returns the previous state when the node (re)joined, else None."""
        info = {k: payload[k] for k in KEEP if k in payload}
        rec = self.nodes.get(node)
        prev = None
        if rec is None:
            rec = self.nodes[node] = {"first_seen": now, "last_seen": now, "state": "healthy", "info": info}
            prev = "unknown"
        else:
            if rec["state"] != "healthy":
                prev = rec["state"]
            rec.update(last_seen=now, state="healthy", info=info)
        if prev is not None or now - rec.get("saved", 0) >= PERSIST_EVERY_S:
            self.store.save_node(node, rec["first_seen"], now, "healthy", info)
            rec["saved"] = now
        return prev

    def find_stale(self, now: float) -> list:
        out = []
        for name, rec in self.nodes.items():
            if rec["state"] == "healthy" and now - rec["last_seen"] > self.settings.stale_after_s:
                rec["state"] = "stale"
                self.store.set_node_state(name, "stale")
                out.append(name)
        return out

    def online(self, node: str, now: float) -> bool:
        rec = self.nodes.get(node)
        return bool(rec) and rec["state"] == "healthy" and now - rec["last_seen"] <= self.settings.stale_after_s

    def infra_paths(self, node: str) -> list:
        """The file allowlist the node's agent reported (homelab_agent_infra_paths), [] when none."""
        paths = ((self.nodes.get(node) or {}).get("info") or {}).get("infra_paths")
        return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []

    def routes_of(self, node: str) -> list:
        routes = list(self.settings.agents[node].routes) if node in self.settings.agents else []
        rec = self.nodes.get(node)
        for e in (rec or {}).get("info", {}).get("engines", []) or []:
            r = e.get("route") if isinstance(e, dict) else None
            if isinstance(r, str) and r not in routes:
                routes.append(r)
        return routes

    def view(self, now: float, store) -> list:
        out = []
        names = list(self.settings.agents) + [n for n in self.nodes if n not in self.settings.agents]
        for name in names:
            rec = self.nodes.get(name)
            item = {"node": name, "configured": name in self.settings.agents, "routes": self.routes_of(name),
                    "pending_commands": store.has_queued(name)}
            if rec is None:
                item.update(state="unknown", last_heartbeat=None, age_s=None)
            else:
                item.update(state=rec["state"], last_heartbeat=rec["last_seen"],
                            age_s=round(now - rec["last_seen"], 1), first_seen=rec["first_seen"], **rec["info"])
            out.append(item)
        return out
