"""The tools that reach the hub (router_app/hub, issue 13) and the model catalog (router_app/catalog, issue 14).

Every call goes to the router's admin API on loopback with the admin key -- the same handlers an operator calls:

* cluster_nodes   GET /admin/nodes (cards, VRAM, engines, heartbeat health) merged with GET /admin/upstreams
* model_list      GET /admin/catalog (per route the load state) plus the routes' models and aliases (/v1/models)
* model_load      POST /admin/models/load; dry_run: GET /admin/placement/{model} (choice, state, evictions)
* model_unload    POST /admin/models/unload; dry_run: the catalog's current states of the model
* infra_list/read POST /admin/commands {kind: list_files | read_file, node, args}, then GET /admin/commands/{id}
                  until the agent's result lands (at most FILE_WAIT_S; the command expires soon after)
* recover_cuda    POST /admin/recover-cuda (queues the hub's closed-list `recover_cuda` command); dry_run: the node,
                  its routes and the command that would be queued (GET /admin/nodes, /admin/command-kinds)

A router without the hub (hub.enabled: false answers 503 hub_disabled) makes the caller fall back to the router-config
view (services.py). Nothing here runs a command of its own.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Optional
from urllib.parse import quote

from .errors import ServiceError

FILE_WAIT_S = 15.0       # how long infra_list/infra_read wait for the node agent's answer
FINAL = ("succeeded", "failed", "refused", "expired", "lost")


def _msg(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body)


def _vram(cards: list) -> dict[str, Any]:
    total = sum(c.get("memory_total_mib") or 0 for c in cards)
    used = sum(c.get("memory_used_mib") or 0 for c in cards)
    return {"total_mib": total, "used_mib": used, "free_mib": max(0, total - used)}


def _card(c: dict) -> dict[str, Any]:
    tot, used = c.get("memory_total_mib"), c.get("memory_used_mib")
    free = tot - used if isinstance(tot, (int, float)) and isinstance(used, (int, float)) else None
    return {"index": c.get("index"), "name": c.get("name"), "uuid": c.get("uuid"), "memory_total_mib": tot,
            "memory_used_mib": used, "memory_free_mib": free, "utilization_pct": c.get("utilization_pct"),
            "temperature_c": c.get("temperature_c"), "power_w": c.get("power_w")}


class ClusterOps:
    """Mixed into services.Services, which supplies `_call(method, path, bearer=None, json=None)`."""

    async def _admin_json(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        status, out = await self._call(method, path, json=body)   # type: ignore[attr-defined]
        if status not in (200, 202):
            raise ServiceError(f"router answered {status} to {method} {path}: {_msg(out)}")
        return out

    async def hub_nodes(self) -> Optional[list]:
        """GET /admin/nodes, or None when the router runs without the hub."""
        status, body = await self._call("GET", "/admin/nodes")   # type: ignore[attr-defined]
        if status == 503 and isinstance(body, dict) and body.get("error", {}).get("code") == "hub_disabled":
            return None
        if status != 200:
            raise ServiceError(f"router answered {status} to GET /admin/nodes: {_msg(body)}")
        return body["nodes"]

    async def catalog(self) -> dict:
        return await self._admin_json("GET", "/admin/catalog")

    async def catalog_or_none(self) -> Optional[dict]:
        """GET /admin/catalog, or None when this router mounts no catalog (404)."""
        status, body = await self._call("GET", "/admin/catalog")   # type: ignore[attr-defined]
        if status == 404:
            return None
        if status != 200:
            raise ServiceError(f"router answered {status} to GET /admin/catalog: {_msg(body)}")
        return body

    # ---------------------------------------------------------------------------------------------- nodes
    async def nodes_from_hub(self, nodes: list) -> dict[str, Any]:
        ups = (await self._admin_json("GET", "/admin/upstreams"))["routes"]
        try:
            cat_routes = (await self.catalog()).get("routes", {})
        except ServiceError:
            cat_routes = {}
        out = []
        for n in nodes:
            cards = [_card(c) for c in n.get("gpus") or [] if isinstance(c, dict)]
            agent_engines = {e.get("route"): e for e in n.get("engines") or [] if isinstance(e, dict)}
            engines = []
            for route in n.get("routes", []):
                st, ae, cr = ups.get(route), agent_engines.get(route, {}), cat_routes.get(route, {})
                engines.append({"route": route, "name": ae.get("name"), "unit": ae.get("unit"),
                                "active": ae.get("active"), "runtime": cr.get("engine"),
                                "model": st and st.get("model"), "healthy": st and st.get("healthy"),
                                "drained": st and st.get("drained"), "in_flight": st and st.get("in_flight"),
                                "state": cr.get("state"), "models": cr.get("models")})
            out.append({"node": n["node"], "health": n.get("state"), "configured": n.get("configured"),
                        "last_heartbeat": n.get("last_heartbeat"), "age_s": n.get("age_s"),
                        "hostname": n.get("hostname"), "cards": cards, "vram": _vram(cards) if cards else None,
                        "engines": engines, "pending_commands": n.get("pending_commands"),
                        "errors": n.get("errors")})
        return {"source": "hub", "nodes": out}

    # ---------------------------------------------------------------------------------------------- models
    async def models_from_catalog(self, v1_models: list, ups: dict) -> dict[str, Any]:
        cat = {m["id"]: m for m in (await self.catalog()).get("models", [])}
        by_route_model = {s["model"]: n for n, s in ups.items()}
        out: dict[str, dict] = {}
        for m in v1_models:     # only what this key may use: catalogued models, the routes' models, the aliases
            mid = m.get("id")
            if mid in cat:
                out[mid] = {"id": mid, "states": cat[mid].get("routes", {}), "source": "catalog"}
                continue
            route = by_route_model.get(mid)
            st = ups.get(route) if route else None
            state = None if st is None else ("drained" if st["drained"] else "ready" if st["healthy"] else "down")
            out[mid] = {"id": mid, "route": route, "state": state, "source": "route" if route else "alias"}
        return {"source": "catalog", "models": list(out.values()),
                "note": "states per route: hot, loading, sleeping, on_disk (catalog); ready/down/drained for a "
                        "route's fixed model; only the models this key may use are listed"}

    async def catalog_load(self, model: str, route: Optional[str], dry_run: bool, unload: bool) -> dict[str, Any]:
        verb = "unload" if unload else "load"
        body = {"model": model, **({"route": route} if route else {})}
        if not dry_run:
            out = await self._admin_json("POST", f"/admin/models/{verb}", body)
            return {"dry_run": False, **out}
        models = {m["id"]: m for m in (await self.catalog()).get("models", [])}
        if model not in models:     # what the real call answers (404 model_not_found), said before anything runs
            raise ServiceError(f"the catalog has no model {model!r}; catalogued: {', '.join(models) or '(none)'}")
        if unload:
            states = {r: s for r, s in models[model]["routes"].items() if route is None or r == route}
            return {"dry_run": True, "model": model, "states": states,
                    "would_unload_from": [r for r, s in states.items() if s in ("hot", "sleeping")],
                    "would_do": f"POST /admin/models/unload {body}"}
        p = await self._admin_json("GET", f"/admin/placement/{quote(model, safe='')}")
        if route is not None:
            cand = [c for c in p.get("candidates", []) if c.get("route") == route]
            if not cand:
                why = [r.get("why") for r in p.get("rejected", []) if r.get("route") == route]
                raise ServiceError(f"cannot load {model!r} on route {route!r}: "
                                   f"{why[0] if why else 'not a catalogued route for it'}")
            choice, state, evict = route, cand[0].get("state"), cand[0].get("evict") or []
        else:
            choice, state, evict = p.get("choice"), p.get("state"), p.get("evict") or []
        return {"dry_run": True, "model": model, "route": choice, "state_now": state, "would_evict": evict,
                "candidates": p.get("candidates"), "rejected": p.get("rejected"),
                "would_do": f"POST /admin/models/load {body}" if choice else "nothing: no route can take it now"}

    # ---------------------------------------------------------------------------------------------- recovery
    async def hub_recover(self, node: str, dry_run: bool, nodes: list) -> dict[str, Any]:
        names = {n["node"]: n for n in nodes}
        if node not in names:
            raise ServiceError(f"unknown node {node!r}; hub nodes: {', '.join(names) or '(none)'}")
        n = names[node]
        if dry_run:
            kinds = {k["kind"]: k for k in (await self._admin_json("GET", "/admin/command-kinds"))["kinds"]}
            return {"dry_run": True, "node": node, "node_health": n.get("state"), "routes": n.get("routes", []),
                    "command": {"kind": "recover_cuda", "args": {}, "help": kinds.get("recover_cuda", {}).get("help")},
                    "would_do": f"POST /admin/recover-cuda {{'node': '{node}'}}: queue the recover_cuda command for "
                                f"{node}'s agent" + ("" if n.get("state") == "healthy" else
                                                     " (the node is not healthy: it runs when its agent reconnects)")}
        cmd = await self._admin_json("POST", "/admin/recover-cuda", {"node": node})
        return {"dry_run": False, "command_id": cmd["id"], "status": cmd["status"], "node": cmd.get("node"),
                "detail": cmd.get("detail"), "follow": f"GET /admin/commands/{cmd['id']} and /admin/events"}

    # ---------------------------------------------------------------------------------------------- files
    async def hub_file(self, node: str, kind: str, args: dict, wait_s: float = FILE_WAIT_S) -> dict[str, Any]:
        """Queue a read-only file command for the node's agent and wait (bounded) for its result."""
        body = {"kind": kind, "node": node, "args": args, "ttl_s": wait_s + 5}
        status, cmd = await self._call("POST", "/admin/commands", json=body)   # type: ignore[attr-defined]
        if status not in (200, 202):
            raise ServiceError(f"{kind} refused by the hub ({status}): {_msg(cmd)}")
        cid, deadline = cmd["id"], time.monotonic() + wait_s
        delay = 0.05
        while cmd.get("status") not in FINAL:
            if time.monotonic() >= deadline:
                raise ServiceError(f"timed out after {wait_s:g} s waiting for {node}'s agent to answer {kind} "
                                   f"(command {cid} is {cmd.get('status')}; it expires unanswered)")
            await asyncio.sleep(delay)
            delay = min(0.25, delay * 1.5)
            cmd = await self._admin_json("GET", f"/admin/commands/{quote(cid, safe='')}")
        res = cmd.get("result") or {}
        if cmd["status"] != "succeeded":
            raise ServiceError(f"{kind} {args.get('path')} on {node}: {cmd['status']} by the node agent: "
                               f"{res.get('summary') or res.get('detail') or cmd.get('detail') or 'no detail'}")
        out = {k: v for k, v in res.items() if k != "summary"}
        return {"node": node, "command_id": cid, **out}
