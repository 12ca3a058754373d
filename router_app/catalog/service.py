"""The catalog service: what the /v1 pipeline, the admin API, the CLI and an MCP bridge call.

    claims(policy, model)          the catalog answers for this name (not an alias, route or homelab/* name)
    place(model, allowed)          Placement (pure, router_app/catalog/placement.py) over the nodes listing it
    ensure(placement)              loads the model where placement chose, single flight, bounded by wait_s
    load(model, route) / unload    explicit, for the admin API and CLI
    begin/end(route, model)        requests in flight per model (eviction never touches those) and idle clocks
    models() / upstreams()         what /v1/models and /admin/upstreams show
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
from typing import Optional

from ..errors import ApiError
from ..ops.telemetry import now_iso
from .adapters import EngineError
from .loader import SingleFlight
from .model import BUSY, DOWN, FAILED, HOT, LOADING, NODE_LOADING, NODE_SLEEPING, OK, ON_DISK, SLEEPING, ModelInfo
from .placement import Placement, idle_evictions, place
from .registry import Registry
from .vram import card_figures, ledger

POLL_S = 0.01


def unavailable(model: str, p: Placement, retry_after: int) -> ApiError:
    why = "; ".join(f"{r['route']}: {r['why']}" for r in p.rejected if r["why"] != "not installed")
    return ApiError(503, f"model '{model}' is installed but no live node can serve it now ({why})",
                    type="server_error", code="model_unavailable",
                    headers={"Retry-After": str(retry_after), "x-should-retry": "false"})


class CatalogService:
    def __init__(self, app):
        self.app = app            # runtime, session, logs (read when used: they are swapped on reload)
        self.registry = Registry(lambda: app.runtime, lambda: app.session)
        self.flights = SingleFlight()
        self.loads: dict = {}     # (route, model, result) -> count
        self.evictions = 0
        self._task: Optional[asyncio.Task] = None

    @property
    def settings(self):
        return self.app.runtime.config.catalog

    @property
    def active(self) -> bool:
        return bool(self.registry.nodes)

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.registry.sync_config()
        if not self.registry.nodes:
            self._task = asyncio.get_running_loop().create_task(self._loop(first=False))
            return
        # the first read, before serving (bounded: an engine that is down does not hold the router's start for long)
        first_s = max(self.settings.refresh_s, 2 * self.app.runtime.config.health.timeout_s + 1)
        try:
            await asyncio.wait_for(self.registry.refresh_all(), first_s)
        except asyncio.TimeoutError:
            pass
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _loop(self, first: bool = True) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            try:
                await self.registry.refresh_all()
                self.agent_vram()
                self._mark_busy()
                await self._idle_sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:      # noqa: BLE001 - the loop must survive anything
                self._event({"event": "catalog_error", "error": f"{type(exc).__name__}: {exc}"})

    def _mark_busy(self) -> None:
        """Engine-aware busy: a fresh engine queue at or over the route's busy_waiting makes try_acquire refuse."""
        rt, now, stale = self.app.runtime, time.monotonic(), self.settings.stale_s
        for name, node in self.registry.nodes.items():
            st, c = rt.states.get(name), self.registry.catalog_cfg(name)
            if st is None or c is None:
                continue
            e = node.engine
            st.engine_busy = bool(c.busy_waiting and e is not None and e.fresh(stale, now)
                                  and e.waiting >= c.busy_waiting)

    def agent_vram(self) -> None:
        """Copies each node agent's card figures (the hub's last heartbeat) onto the routes its engines serve."""
        hub = getattr(self.app, "hub", None)
        if hub is None:
            return
        for name, rec in hub.registry.nodes.items():
            gpus = (rec.get("info") or {}).get("gpus")
            for route in hub.registry.routes_of(name):
                node, c = self.registry.nodes.get(route), self.registry.catalog_cfg(route)
                if node is None or c is None:
                    continue
                fig = card_figures(gpus, c.gpu_cards)
                node.agent_vram = None if fig is None else (fig[0], fig[1], rec["last_seen"])

    def _apply_ledger(self, node, now_wall: float) -> None:
        c = self.registry.catalog_cfg(node.route)
        learned = sum(m.size_mb for m in node.resident())
        cap, used, src = ledger(c.vram_mb if c else 0, learned, node.agent_vram, now_wall, self.settings.stale_s)
        node.vram_mb, node.vram_used_mb = cap, (used if src == "agent" else None)

    async def _idle_sweep(self) -> None:
        now = time.monotonic()
        for name, node in list(self.registry.nodes.items()):
            c = self.registry.catalog_cfg(name)
            for m in idle_evictions(node, c.idle_ttl_s if c else 0, now):
                await self._unload(name, m, "idle")

    # ----------------------------------------------------------------------------- request path
    def claims(self, policy, model: Optional[str]) -> bool:
        """A name in the catalog, unless it is an alias, a route name or homelab/*; a route's own model id only
        when that route is catalogued on demand (so it gets loaded; a pinned route keeps its failover chain)."""
        if not model or model not in self.registry.index or model in policy.aliases or model in policy.routes \
                or model.startswith("homelab/"):
            return False
        owner = policy.model_ids.get(model)
        if owner is None:
            return True
        node = self.registry.nodes.get(owner)
        return node is not None and node.residency == "on_demand"

    def place(self, model: str, allowed: Optional[frozenset] = None, full: bool = False,
              only: Optional[str] = None) -> Placement:
        """`only`: that route alone (a keyword-routed request already has its route; its own model is placed there)."""
        nodes = self.registry.live_nodes(model)
        if only is not None:
            nodes = [n for n in nodes if n.route == only]
        wall = time.time()
        for n in nodes:
            n.group_busy = self._group_busy(n.route)
            self._apply_ledger(n, wall)
        return place(model, nodes, self.settings.stale_s, time.monotonic(), allowed=allowed, full=full,
                     ignore_drain=only is not None)

    def _group_busy(self, route: str) -> bool:
        c = self.registry.catalog_cfg(route)
        if c is None or not c.gpu_group:
            return False
        for other, node in self.registry.nodes.items():
            oc = self.registry.catalog_cfg(other)
            if other != route and oc is not None and oc.gpu_group == c.gpu_group \
                    and any(node.model_in_flight.values()):
                return True
        return False

    async def ensure(self, p: Placement, wait_s: Optional[float] = None) -> None:
        if p.state == HOT:
            return
        route, model = p.choice, p.model
        try:
            await self.flights.run((route, model), lambda: self._load(route, model, list(p.evict)),
                                   wait_s or self.settings.wait_s)
        except asyncio.TimeoutError:
            raise ApiError(503, f"model '{model}' is still loading on '{route}'", type="server_error",
                           code="model_loading", headers={"Retry-After": "5", "x-should-retry": "false"}) from None
        except (EngineError, aiohttp.ClientError, OSError) as exc:     # the engine refused, or is not there
            raise ApiError(503, f"loading model '{model}' on '{route}' failed: {exc or type(exc).__name__}",
                           type="server_error",
                           code="model_load_failed", headers={"Retry-After": str(self.settings.retry_after_s),
                                                              "x-should-retry": "false"}) from None

    def begin(self, route: str, model: str) -> None:
        node = self.registry.nodes.get(route)
        if node is not None:
            node.model_in_flight[model] = node.model_in_flight.get(model, 0) + 1
            node.last_used[model] = time.monotonic()

    def end(self, route: str, model: str) -> None:
        node = self.registry.nodes.get(route)
        if node is not None:
            n = node.model_in_flight.get(model, 0) - 1
            if n > 0:
                node.model_in_flight[model] = n
            else:
                node.model_in_flight.pop(model, None)
            node.last_used[model] = time.monotonic()

    # ----------------------------------------------------------------------------- load / unload
    async def _load(self, route: str, model: str, evict: list) -> None:
        reg = self.registry
        node, ad, c = reg.nodes[route], reg.adapter(route), reg.catalog_cfg(route)
        t0 = time.monotonic()
        for name in evict:
            await self._unload(route, name, "evict")
        if c is not None and c.gpu_group:       # seed 000: one engine of a shared card resident at a time
            for other, on in list(reg.nodes.items()):
                oc = reg.catalog_cfg(other)
                if other != route and oc is not None and oc.gpu_group == c.gpu_group:
                    for m in [m.name for m in on.models.values() if m.state == HOT]:
                        await self._unload(other, m, "gpu_group")
        info = node.models.get(model) or ModelInfo(model)
        info.state = LOADING
        timeout = c.load_timeout_s if c else 120.0
        try:
            await ad.load(info, timeout)
            deadline = time.monotonic() + timeout
            while True:
                models = await ad.models()
                got = models.get(model)
                if got is not None and got.state == HOT:
                    break
                if got is None or got.state == FAILED or (got.state == ON_DISK and info.state == FAILED):
                    raise EngineError(f"the engine reports '{model}' as {got.state if got else 'gone'}")
                if time.monotonic() > deadline:
                    raise EngineError(f"not loaded after {timeout}s")
                await asyncio.sleep(POLL_S)
            reg.adopt(route, models)
        except Exception as exc:
            info.state = FAILED if isinstance(exc, EngineError) else ON_DISK
            self._count(route, model, "failed")
            self._event({"event": "model_load", "route": route, "model": model, "ok": False, "error": str(exc)})
            raise
        node.last_used[model] = time.monotonic()
        self._count(route, model, "ok")
        self._event({"event": "model_load", "route": route, "model": model, "ok": True, "evicted": evict,
                     "load_s": round(time.monotonic() - t0, 3)})

    async def _unload(self, route: str, model: str, why: str) -> None:
        reg = self.registry
        node, ad, c = reg.nodes[route], reg.adapter(route), reg.catalog_cfg(route)
        info = node.models.get(model)
        if info is None or node.model_in_flight.get(model):
            return
        timeout = c.load_timeout_s if c else 120.0
        await ad.unload(info, timeout)
        # engines may stop an instance after answering (llama-server does): wait until it is gone, or a load that
        # follows finds it still counted and the engine evicts a model of its own choosing
        deadline = time.monotonic() + timeout
        while True:
            models = await ad.models()
            got = models.get(model)
            if got is None or got.state not in (HOT, LOADING, SLEEPING) or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
        info.state = ON_DISK
        # the engine's listing as it is now (a background refresh may have swapped node.models while this waited)
        reg.adopt(route, models)
        if model in node.models and node.models[model].state in (HOT, LOADING):
            node.models[model].state = ON_DISK
        self.evictions += 1
        self._event({"event": "model_unload", "route": route, "model": model, "why": why})

    def _count(self, route, model, result) -> None:
        k = (route, model, result)
        self.loads[k] = self.loads.get(k, 0) + 1

    def _event(self, rec: dict) -> None:
        try:
            self.app.logs.events.write({"ts": now_iso(), **rec})
        except Exception:      # noqa: BLE001 - logging never breaks a load
            pass

    # ----------------------------------------------------------------------------- admin
    def _placement_for(self, model: str, route: Optional[str]) -> Placement:
        if model not in self.registry.index:
            raise ApiError(404, f"The model `{model}` does not exist", code="model_not_found", param="model")
        p = self.place(model)
        if route is not None:
            p = self.place(model, full=True)
            keep = [c for c in p.candidates if c["route"] == route]
            if not keep:
                why = [r["why"] for r in p.rejected if r["route"] == route] or ["not a catalogued route"]
                raise ApiError(409, f"cannot load '{model}' on '{route}': {why[0]}", code="placement_refused")
            p.choice, p.state, p.evict = route, keep[0]["state"], keep[0]["evict"] or []
        if p.choice is None:
            raise unavailable(model, p, self.settings.retry_after_s)
        return p

    async def load(self, model: str, route: Optional[str] = None) -> dict:
        p = self._placement_for(model, route)
        await self.ensure(p)
        return {"model": model, "route": p.choice, "state": HOT, "evicted": p.evict}

    async def unload(self, model: str, route: Optional[str] = None) -> dict:
        routes = [r for r in self.registry.index.get(model, ()) if route is None or r == route]
        if not routes:
            raise ApiError(404, f"The model `{model}` does not exist", code="model_not_found", param="model")
        done = []
        for r in routes:
            node = self.registry.nodes[r]
            if node.model_in_flight.get(model):
                raise ApiError(409, f"'{model}' has requests in flight on '{r}'", code="model_busy")
            if node.models[model].state in (HOT, SLEEPING) and node.residency == "on_demand":
                try:
                    await self._unload(r, model, "admin")
                except EngineError as exc:
                    raise ApiError(502, str(exc), type="server_error", code="engine_error") from None
                done.append(r)
        return {"model": model, "unloaded_from": done}

    def models(self) -> list:
        out = []
        for m, routes in sorted(self.registry.index.items()):
            out.append({"id": m, "routes": {r: self.registry.nodes[r].models[m].state for r in routes}})
        return out

    def node_state(self, route: str) -> str:
        node, st = self.registry.nodes.get(route), self.app.runtime.states.get(route)
        if node is None or st is None or not st.healthy:
            return DOWN
        states = {m.state for m in node.models.values()}
        if LOADING in states or any(k[0] == route for k in self.flights._tasks):
            return NODE_LOADING
        if SLEEPING in states and HOT not in states:
            return NODE_SLEEPING
        if st.in_flight >= st.max_concurrency or getattr(st, "engine_busy", False):
            return BUSY
        return OK

    def _vram_view(self, node) -> dict:
        self._apply_ledger(node, time.time())
        return {"source": "agent" if node.vram_used_mb is not None else "learned", "total_mb": node.vram_mb or None,
                "used_mb": node.used_mb()}

    def upstreams(self) -> dict:
        now, stale = time.monotonic(), self.settings.stale_s
        out = {}
        for name, node in self.registry.nodes.items():
            e = node.engine
            fresh = e is not None and e.fresh(stale, now)
            out[name] = {"engine": self.registry.adapters[name].engine, "state": self.node_state(name),
                         "residency": node.residency, "busy_source": "engine" if fresh else "router",
                         "engine_waiting": e.waiting if fresh else None, "engine_running": e.running if fresh else None,
                         "kv_cache_usage": e.kv_usage if fresh else None,
                         "models": {m.name: m.state for m in node.models.values()},
                         "in_flight_by_model": dict(node.model_in_flight), "refresh_error": self.registry.errors.get(name),
                         "vram": self._vram_view(node)}
        return out
