"""The catalog registry: one NodeView per catalogued route, refreshed in the background every `refresh_s`.

Requests read it and never call an engine themselves. A refresh that fails keeps the models last seen (so a model
whose only node is down is still "installed": a 503, not a 404) and records the error; the route's health is the
health checker's (router_app/dispatch/upstreams.py), copied in when placement reads the node.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional

from . import keep_alive
from .adapters import ADAPTERS, Adapter, OllamaAdapter
from .model import NodeView


class Registry:
    def __init__(self, get_runtime: Callable, get_session: Callable):
        self._rt = get_runtime
        self._session = get_session
        self.nodes: dict = {}          # route -> NodeView
        self.adapters: dict = {}       # route -> Adapter
        self.index: dict = {}          # model -> tuple of routes
        self.errors: dict = {}         # route -> last refresh error
        self.refreshed_at: dict = {}   # route -> monotonic time of the last good refresh
        self.refreshed_wall: dict = {} # the same, wall clock (compared with a route's last_error_at)
        self._cfg_key: dict = {}
        self.refreshes = 0
        self.changes: dict = {}        # route -> count of load/unload results adopted (a refresh older than one is stale)

    # ----------------------------------------------------------------------------- config
    def sync_config(self) -> None:
        """Nodes for the routes that have a catalog block (kept across reloads, matched by name)."""
        rt = self._rt()
        keep = {}
        for name, r in rt.config.routes.items():
            c = r.catalog
            if c is None:
                continue
            node = self.nodes.get(name) or NodeView(name)
            node.residency = "on_demand" if (c.residency == "on_demand" or c.sleep_wake) else "pinned"
            node.max_resident, node.vram_mb, node.capacity = c.max_resident, c.vram_mb, r.max_concurrency
            keep[name] = node
            key = (r.url, c.engine)
            if self._cfg_key.get(name) != key or name not in self.adapters:
                st = rt.states.get(name)
                hdrs = {k: v for k, v in (st.headers if st else {}).items() if k == "Authorization"}
                self.adapters[name] = ADAPTERS[c.engine](self._session(), r.url, hdrs, rt.config.health.timeout_s)
                self._cfg_key[name] = key
            if isinstance(self.adapters[name], OllamaAdapter):     # issue 12: per-model keep_alive on its loads
                self.adapters[name].keep_alive = keep_alive.for_url(rt.config.routes, r.url)
        for gone in set(self.nodes) - set(keep):
            self.adapters.pop(gone, None)
        self.nodes = keep
        self._reindex()

    def catalog_cfg(self, route: str):
        r = self._rt().config.routes.get(route)
        return r.catalog if r is not None else None

    def adapter(self, route: str) -> Optional[Adapter]:
        return self.adapters.get(route)

    # ----------------------------------------------------------------------------- refresh
    async def refresh_route(self, route: str) -> None:
        node, ad = self.nodes.get(route), self.adapters.get(route)
        if node is None or ad is None:
            return
        seen = self.changes.get(route, 0)
        try:
            models = await ad.models()
        except Exception as exc:      # noqa: BLE001 - an engine's failure is data here
            self.errors[route] = f"{type(exc).__name__}: {exc}"
            return
        if self.changes.get(route, 0) != seen:     # a load or unload finished while this read: its listing is newer
            return
        self.adopt(route, models, changed=False)
        self.refreshed_at[route] = time.monotonic()
        self.refreshed_wall[route] = time.time()
        self.errors.pop(route, None)
        try:
            load = await ad.load_figures(models)
        except Exception as exc:      # noqa: BLE001
            self.errors[route] = f"load figures: {type(exc).__name__}: {exc}"
            load = None
        if load is not None:
            node.engine = load
        self._reindex()

    def adopt(self, route: str, models: dict, changed: bool = True) -> None:
        """`models` (an engine's fresh listing) becomes the route's; observed sizes survive a listing without them.
        `changed`: the listing a load or unload ended with (a background refresh that started before it is dropped)."""
        node = self.nodes.get(route)
        if node is None:
            return
        if changed:
            self.changes[route] = self.changes.get(route, 0) + 1
        for name, m in models.items():
            old = node.models.get(name)
            if old is not None and not m.size_mb:
                m.size_mb = old.size_mb
        node.models = models
        self._reindex()

    async def refresh_all(self) -> None:
        self.sync_config()
        await asyncio.gather(*(self.refresh_route(r) for r in list(self.nodes)), return_exceptions=True)
        self.refreshes += 1

    def _reindex(self) -> None:
        idx: dict = {}
        for name, node in self.nodes.items():
            for m in node.models:
                idx.setdefault(m, []).append(name)
        self.index = {m: tuple(rs) for m, rs in idx.items()}

    def outdated(self, route: str) -> bool:
        """The route was marked down after its last good refresh: an engine that went away (a restart) has lost
        every model it had loaded, so "hot" from before the outage is not to be trusted."""
        st = self._rt().states.get(route)
        err_at = getattr(st, "last_error_at", None) if st is not None else None
        return bool(err_at) and err_at >= self.refreshed_wall.get(route, 0.0)

    # ----------------------------------------------------------------------------- reads
    def live_nodes(self, model: str) -> list:
        """The nodes listing `model`, with the router's own view (health, drain, in-flight) copied in."""
        states = self._rt().states
        out = []
        for r in self.index.get(model, ()):
            node = self.nodes.get(r)
            st = states.get(r)
            if node is None or st is None:
                continue
            node.healthy, node.drained, node.in_flight = st.healthy, st.drained or bool(st.hub_drained), st.in_flight
            out.append(node)
        return out
