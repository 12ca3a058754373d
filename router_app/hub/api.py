"""HTTP surface of the hub, mounted on the router's operational app (router_app/ops/app.py).

* /admin/nodes, /admin/commands[/{id}], /admin/command-kinds, /admin/recover-cuda, /admin/events,
  /admin/proxmox/guests: the admin key, or a per-app key with the ``admin`` scope (``read`` for the GETs)
  (router_app/ops/auth.py), like every /admin/* endpoint; `requested_by` of a command names the app.
* /hub/agent/*: served by the raw ASGI handler in agent_asgi.py (node token auth), ahead of this app.
Errors are OpenAI-shaped (ApiError), like the rest of the router.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from ..errors import ApiError
from . import commands as cmds
from .service import HubError

MAX_BODY = 1 << 20


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _hub(host):
    hub = getattr(host, "hub", None)
    if hub is None:
        raise ApiError(503, "the hub is off (hub.enabled: false in the router config)", type="server_error",
                       code="hub_disabled")
    return hub


def _api_error(exc: HubError) -> ApiError:
    typ = "authentication_error" if exc.status == 401 else "invalid_request_error"
    return ApiError(exc.status, exc.message, type=typ, code=exc.code, param=exc.param)


async def _body(request: Request, limit: int = MAX_BODY) -> dict:
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(413, f"body over {limit} bytes", code="body_too_large")
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", code="invalid_json")
    return data


def _who(request: Request) -> str:
    who = getattr(request.state, "admin_principal", None)     # set by ops/app.py's require_admin
    if who in ("admin-key", "loopback") or (isinstance(who, str) and who.startswith("app:")):
        client = request.client.host if request.client else "?"
        return who if who.startswith("app:") else f"{who}@{client}"
    auth = request.headers.get("authorization", "")
    client = request.client.host if request.client else "?"
    return f"admin-key@{client}" if auth.startswith("Bearer ") else f"loopback@{client}"


def _int(v: Optional[str], name: str, default: int, lo: int = 0, hi: int = 10 ** 12) -> int:
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", code="invalid_query", param=name) from None
    if not lo <= n <= hi:
        raise ApiError(400, f"{name} must be in [{lo}, {hi}]", code="invalid_query", param=name)
    return n


def build_admin_router(host, admin_deps: list, admin_errors: Optional[dict] = None) -> APIRouter:
    r = APIRouter(tags=["admin"], dependencies=admin_deps, responses=admin_errors or {})

    async def call(fn, *a, **kw):
        try:
            out = fn(*a, **kw)
            return await out if asyncio.iscoroutine(out) else out
        except HubError as exc:
            raise _api_error(exc) from None

    @r.get("/admin/nodes", summary="Node registry: last heartbeat, healthy/stale/unknown, cards, engines")
    async def nodes():
        return _Json({"nodes": await call(_hub(host).nodes)})

    @r.get("/admin/command-kinds", summary="The closed list of commands and their arguments")
    async def kinds():
        return _Json({"kinds": cmds.catalogue()})

    @r.get("/admin/commands", summary="Commands, newest first (audit: who, what, when, result)")
    async def list_commands(request: Request):
        q = request.query_params
        return _Json({"commands": await call(_hub(host).commands, q.get("node"), q.get("status"),
                                             _int(q.get("limit"), "limit", 100, 1, 1000))})

    @r.get("/admin/commands/{cid}", summary="One command")
    async def get_command(cid: str):
        return _Json(await call(_hub(host).command, cid))

    @r.post("/admin/commands", summary="Queue a command from the closed list",
            description="Body: {kind, args, node | route, ttl_s}. Node commands wait for the node's agent; "
                        "drain_route, undrain_route and reload_policy run in the router at once.")
    async def submit(request: Request):
        b = await _body(request)
        unknown = set(b) - {"kind", "args", "node", "route", "ttl_s"}
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}", code="unknown_field",
                           param=sorted(unknown)[0])
        cmd = await call(_hub(host).submit, b.get("kind"), b.get("args"), node=b.get("node"), route=b.get("route"),
                         requested_by=_who(request), ttl_s=b.get("ttl_s"))
        return _Json(cmd, status_code=202 if cmd["status"] == "queued" else 200)

    @r.post("/admin/recover-cuda", summary="Recover CUDA on a node (or the node serving a route)",
            description="Body: {node} or {route}, optional ttl_s. Answers 202 with the command; the outcome lands "
                        "in /admin/events (recovery_requested, command_*, recovery_succeeded|failed, route_up).")
    async def recover(request: Request):
        b = await _body(request)
        unknown = set(b) - {"node", "route", "ttl_s"}
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}", code="unknown_field",
                           param=sorted(unknown)[0])
        cmd = await call(_hub(host).recover_cuda, b.get("node"), b.get("route"), _who(request), b.get("ttl_s"))
        return _Json(cmd, status_code=202)

    @r.get("/admin/events", summary="Events: route up/down, drains, reloads, nodes, commands, recoveries")
    async def events(request: Request):
        q = request.query_params
        return _Json({"events": await call(_hub(host).events, since_id=_int(q.get("since"), "since", 0),
                                           kind=q.get("kind"), node=q.get("node"), route=q.get("route"),
                                           limit=_int(q.get("limit"), "limit", 200, 1, 5000))})

    @r.get("/admin/proxmox/guests", summary="Read-only Proxmox view: guests and their state (proxmoxer)")
    async def proxmox_guests():
        from .proxmox import guests
        hub = _hub(host)
        return _Json(await asyncio.to_thread(guests, hub.settings.proxmox))

    return r
