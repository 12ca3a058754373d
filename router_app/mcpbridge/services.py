"""The one service interface the MCP tools call (router_app/mcpbridge/tools.py holds no logic of its own).

Everything goes through the router's admin API on loopback with the admin key -- the same handlers operators call,
so there is no second implementation:

* routes: `/admin/upstreams`, `/admin/drain|undrain/<route>`, `/admin/reload-config`, `/admin/keys`, `/v1/models`;
* the hub (router_app/hub, issue 13) and the model catalog (router_app/catalog, issue 14): cluster.py
  (`/admin/nodes`, `/admin/recover-cuda`, `/admin/catalog`, `/admin/placement/{model}`, `/admin/models/load|unload`);
* infra_list/infra_read: the hub's closed-list `list_files`/`read_file` commands (POST /admin/commands, then
  GET /admin/commands/{id} until the agent's result lands, bounded: cluster.py `hub_file`); each node's allowlist is
  its inventory's homelab_agent_infra_paths, reported by its agent and checked by the hub and again by the agent;
* the router config file the router was started with (routes know their engine URLs; the `mcp:` section may carry
  the inventory's node map). A router without the hub falls back to this view.

`Hooks` lets a test (or a future in-process embedding) replace one tool's backend; `default_hooks()` sets none, and
each tool then calls the admin API. The bridge never runs commands of its own (see README-mcp.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import quote, urlsplit

import aiohttp

from ..agent.files import path_problem
from ..decision.config import ConfigInvalid, RouterConfig, load_config
from .cluster import ClusterOps
from .errors import ServiceError
from .settings import BridgeSettings, bridge_settings, router_base_url

NEEDS_HUB = "requires the hub (hub.enabled: true in the router config)"
OLLAMA_PORT = 11434

__all__ = ["Hooks", "ServiceError", "Services", "default_hooks"]


# ------------------------------------------------------------------------------------------ hooks (overrides)
NodesFn = Callable[[], Awaitable[list[dict[str, Any]]]]                         # hub: nodes, cards, VRAM, health
CatalogFn = Callable[[], Awaitable[list[dict[str, Any]]]]                       # catalog: models with states
LoadFn = Callable[[str, Optional[str], bool], Awaitable[dict[str, Any]]]        # (model, node, dry_run)
InfraListFn = Callable[[str, Optional[str]], Awaitable[dict[str, Any]]]         # (node, path)
InfraReadFn = Callable[[str, str, int], Awaitable[dict[str, Any]]]              # (node, path, max_bytes)
RecoverFn = Callable[[str, bool], Awaitable[dict[str, Any]]]                    # (node, dry_run)


@dataclass
class Hooks:
    nodes: Optional[NodesFn] = None
    catalog: Optional[CatalogFn] = None
    model_load: Optional[LoadFn] = None
    model_unload: Optional[LoadFn] = None
    infra_list: Optional[InfraListFn] = None
    infra_read: Optional[InfraReadFn] = None
    recover_cuda: Optional[RecoverFn] = None


def default_hooks() -> Hooks:
    """No overrides: every tool calls the router's admin API (cluster.py for the hub and the catalog)."""
    return Hooks()


# ------------------------------------------------------------------------------------------ the service layer
class Services(ClusterOps):
    def __init__(self, config_path: str, admin_key: Optional[str], hooks: Optional[Hooks] = None,
                 timeout_s: float = 15.0):
        self.config_path = config_path
        self.admin_key = admin_key
        self.hooks = hooks or default_hooks()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: Optional[aiohttp.ClientSession] = None
        self.cfg, self.settings = self._load()

    def _load(self) -> tuple[RouterConfig, BridgeSettings]:
        cfg = load_config(self.config_path)
        return cfg, bridge_settings(cfg)

    def refresh(self) -> None:
        """Re-read the config file (after a reload); an invalid file keeps the last good one."""
        try:
            self.cfg, self.settings = self._load()
        except Exception:       # noqa: BLE001 - the router refuses the same file and keeps serving too
            pass

    @property
    def router_url(self) -> str:
        return router_base_url(self.cfg, self.settings)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -------------------------------------------------------------------------------- router HTTP (loopback)
    async def _call(self, method: str, path: str, bearer: Optional[str] = None,
                    json: Optional[dict] = None) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {}
        key = bearer if bearer is not None else self.admin_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            async with self._session.request(method, self.router_url + path, headers=headers, json=json) as r:
                body = await r.json(content_type=None)
                return r.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ServiceError(f"the router at {self.router_url} did not answer {method} {path}: "
                               f"{type(exc).__name__}") from None

    async def _admin(self, method: str, path: str) -> Any:
        status, body = await self._call(method, path)
        if status != 200:
            msg = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else None
            raise ServiceError(f"router answered {status} to {method} {path}: {msg or body}")
        return body

    # -------------------------------------------------------------------------------- routes
    async def route_status(self, route: Optional[str] = None) -> dict[str, Any]:
        ups = await self._admin("GET", "/admin/upstreams")
        if route is None:
            return ups
        if route not in ups["routes"]:
            raise ServiceError(f"unknown route {route!r}; routes: {', '.join(ups['routes'])}")
        return {"routes": {route: ups["routes"][route]}, "config_generation": ups["config_generation"]}

    async def drain_route(self, route: str, drain: bool, dry_run: bool) -> dict[str, Any]:
        ups = (await self.route_status(route))["routes"][route]
        if dry_run:
            verb = "drain" if drain else "undrain"
            change = ups["drained"] != drain
            return {"dry_run": True, "route": route, "drained_now": ups["drained"], "would_change": change,
                    "would_do": f"POST /admin/{verb}/{route}" + ("" if change else " (no change: already so)"),
                    "in_flight": ups["in_flight"]}
        out = await self._admin("POST", f"/admin/{'drain' if drain else 'undrain'}/{quote(route, safe='')}")
        return {"dry_run": False, **out}

    async def reload_policy(self, dry_run: bool) -> dict[str, Any]:
        if dry_run:     # the same validation the router runs on reload (load_config), without swapping
            try:
                new = load_config(self.config_path)
            except ConfigInvalid as exc:
                return {"dry_run": True, "valid": False,
                        "errors": [{"path": e.path, "message": e.message} for e in exc.errors],
                        "would_do": "nothing: the router would refuse this file and keep its policy"}
            old = set((await self._admin("GET", "/admin/upstreams"))["routes"])
            return {"dry_run": True, "valid": True, "routes": list(new.routes),
                    "routes_added": sorted(set(new.routes) - old), "routes_removed": sorted(old - set(new.routes)),
                    "would_do": "POST /admin/reload-config"}
        status, body = await self._call("POST", "/admin/reload-config")
        if status == 422:
            return {"dry_run": False, "reloaded": False, "errors": body.get("errors", []),
                    "message": body.get("error", {}).get("message")}
        if status != 200:
            raise ServiceError(f"router answered {status} to the reload: {body}")
        self.refresh()
        return {"dry_run": False, "reloaded": True, **body}

    async def keys(self) -> dict[str, Any]:
        return await self._admin("GET", "/admin/keys")

    # -------------------------------------------------------------------------------- models
    async def model_list(self, bearer: str) -> dict[str, Any]:
        if self.hooks.catalog is not None:
            return {"source": "catalog", "models": await self.hooks.catalog()}
        status, body = await self._call("GET", "/v1/models", bearer=bearer)   # what this key may use
        if status != 200:
            raise ServiceError(f"router answered {status} to GET /v1/models: {body}")
        ups = (await self._admin("GET", "/admin/upstreams"))["routes"]
        if await self.catalog_or_none() is not None:
            return await self.models_from_catalog(body.get("data", []), ups)
        by_model = {s["model"]: (n, s) for n, s in ups.items()}
        out = []
        for m in body.get("data", []):
            route, st = by_model.get(m.get("id"), (None, None))
            state = None if st is None else ("drained" if st["drained"] else "ready" if st["healthy"] else "down")
            out.append({"id": m.get("id"), "route": route, "state": state})
        return {"source": "router", "models": out, "note": "this router serves no model catalog: a route's "
                                                            "model is ready, down or drained"}

    async def model_load(self, model: str, node: Optional[str], dry_run: bool, unload: bool = False,
                         route: Optional[str] = None) -> dict:
        fn = self.hooks.model_unload if unload else self.hooks.model_load
        if fn is not None:
            if node is not None:
                self._node(node)
            return await fn(model, node, dry_run)
        if node is not None and route is None:
            route = await self._route_on_node(model, node)
        return await self.catalog_load(model, route, dry_run, unload)

    async def _route_on_node(self, model: str, node: str) -> str:
        hub = await self.hub_nodes()
        routes_by_node = ({n["node"]: n.get("routes", []) for n in hub} if hub is not None else
                          {k: [e["route"] for e in v["engines"] if e["route"]] for k, v in self._derived_nodes().items()})
        if node not in routes_by_node:
            raise ServiceError(f"unknown node {node!r}; nodes: {', '.join(routes_by_node) or '(none)'}")
        cat = {m["id"]: m for m in (await self.catalog()).get("models", [])}
        if model not in cat:
            raise ServiceError(f"the catalog has no model {model!r}")
        here = [r for r in cat[model]["routes"] if r in routes_by_node[node]]
        if len(here) != 1:
            raise ServiceError(f"node {node!r} has {len(here) or 'no'} catalogued route(s) for {model!r}"
                               f"{': ' + ', '.join(here) + ' (give route)' if here else ''}; "
                               f"the model's routes: {', '.join(cat[model]['routes']) or '(none)'}")
        return here[0]

    # -------------------------------------------------------------------------------- nodes
    def _derived_nodes(self) -> dict[str, dict[str, Any]]:
        """Nodes from the `mcp.nodes` map (compiled from the inventory), else from the routes' engine URLs."""
        nodes: dict[str, dict[str, Any]] = {}
        url_owner: dict[str, str] = {}
        for name, n in self.settings.nodes.items():
            engines = []
            for e in n.engines:
                url = e.url or (f"http://{n.address}:{e.port}/v1" if n.address and e.port else None)
                if e.route and e.route in self.cfg.routes:
                    url = url or self.cfg.routes[e.route].url
                engines.append({"route": e.route, "runtime": e.runtime, "url": url})
                if url:
                    url_owner[url.rstrip("/")] = name
            nodes[name] = {"node": name, "address": n.address, "engines": engines, "ollama_url": n.ollama_url}
        for rname, r in self.cfg.routes.items():
            if r.url in url_owner:
                continue
            host = urlsplit(r.url).hostname or r.url
            node = nodes.setdefault(host, {"node": host, "address": host, "engines": [], "ollama_url": None})
            node["engines"].append({"route": rname, "runtime": None, "url": r.url})
        return nodes

    def _node(self, node: str) -> dict[str, Any]:
        nodes = self._derived_nodes()
        if node not in nodes:
            raise ServiceError(f"unknown node {node!r}; nodes: {', '.join(nodes) or '(none)'}")
        return nodes[node]

    async def cluster_nodes(self) -> dict[str, Any]:
        if self.hooks.nodes is not None:
            return {"source": "hub", "nodes": await self.hooks.nodes()}
        hub = await self.hub_nodes()
        if hub is not None:
            out = await self.nodes_from_hub(hub)
            for n in out["nodes"]:      # the inventory's addresses (mcp.nodes) where the names agree
                known = self.settings.nodes.get(n["node"])
                n["address"], n["ollama_url"] = (known.address, known.ollama_url) if known else (None, None)
            return out
        ups = (await self._admin("GET", "/admin/upstreams"))["routes"]
        out = []
        for n in self._derived_nodes().values():
            engines = []
            for e in n["engines"]:
                st = ups.get(e["route"]) if e["route"] else None
                engines.append({**e, "model": st and st["model"], "healthy": st and st["healthy"],
                                "drained": st and st["drained"], "in_flight": st and st["in_flight"]})
            known = [e["healthy"] for e in engines if e["healthy"] is not None]
            out.append({**n, "engines": engines, "cards": None, "vram": None,
                        "health": "unknown" if not known else "ok" if all(known) else
                        "degraded" if any(known) else "down"})
        return {"source": "router-config", "nodes": out,
                "note": "cards and VRAM come from the node agents through the hub, which this router does not run "
                        "(hub.enabled: false); "
                        "health here is the router's view of each engine"}

    async def node_engine_url(self, node: str, route: Optional[str] = None) -> dict[str, Any]:
        n = self._node(node)
        engines = [e for e in n["engines"] if e["url"] and (route is None or e["route"] == route)]
        if not engines:
            raise ServiceError(f"node {node!r} has no engine" + (f" for route {route!r}" if route else "")
                               + f"; its routes: {', '.join(str(e['route']) for e in n['engines']) or '(none)'}")
        return {"node": node, "engines": [{"route": e["route"], "runtime": e["runtime"], "url": e["url"]}
                                          for e in engines]}

    async def node_ollama_url(self, node: str) -> dict[str, Any]:
        n = self._node(node)
        if n["ollama_url"]:
            return {"node": node, "url": n["ollama_url"].rstrip("/")}
        for e in n["engines"]:
            u = urlsplit(e["url"] or "")
            if e["runtime"] == "ollama" or u.port == OLLAMA_PORT:
                return {"node": node, "url": f"{u.scheme}://{u.netloc}", "route": e["route"]}
        raise ServiceError(f"node {node!r} runs no Ollama engine that the router knows of "
                           f"(use node_engine_url for its engines)")

    # -------------------------------------------------------------------------------- infra (node agents)
    async def _hub_or_fail(self, tool: str) -> list:
        hub = await self.hub_nodes()
        if hub is None:
            raise ServiceError(f"{tool} {NEEDS_HUB}: files are fetched by the node agents through the hub")
        return hub

    async def infra_list(self, node: str, path: Optional[str] = None) -> dict[str, Any]:
        if path is not None and (why := path_problem(path)):
            raise ServiceError(why)
        if self.hooks.infra_list is not None:
            return await self.hooks.infra_list(node, path)
        nodes = {n["node"]: n for n in await self._hub_or_fail("infra_list")}
        if node not in nodes:
            raise ServiceError(f"unknown node {node!r}; hub nodes: {', '.join(nodes) or '(none)'}")
        allowed = nodes[node].get("infra_paths") or []
        if path is None:
            return {"node": node, "node_health": nodes[node].get("state"), "allowlist": allowed,
                    "note": "give path (an allowlist entry or a path under one) to list it through the node agent"}
        return await self.hub_file(node, "list_files", {"path": path})

    async def infra_read(self, node: str, path: str, max_bytes: int) -> dict[str, Any]:
        if why := path_problem(path):
            raise ServiceError(why)
        if self.hooks.infra_read is not None:
            return await self.hooks.infra_read(node, path, max_bytes)
        await self._hub_or_fail("infra_read")
        return await self.hub_file(node, "read_file", {"path": path, "max_bytes": max_bytes})

    async def recover_cuda(self, node: str, dry_run: bool) -> dict[str, Any]:
        if self.hooks.recover_cuda is not None:
            self._node(node)
            return await self.hooks.recover_cuda(node, dry_run)
        hub = await self.hub_nodes()
        if hub is None:
            n = self._node(node)
            routes = [e["route"] for e in n["engines"] if e["route"]]
            raise ServiceError(f"recover_cuda {NEEDS_HUB}. It would queue the recover_cuda command for {node}'s "
                               f"agent (routes: {', '.join(routes) or 'none'})")
        return await self.hub_recover(node, dry_run, hub)
