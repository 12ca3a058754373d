"""Admin endpoints of the catalog (mounted by router_app/ops/app.py behind the admin check):

    GET  /admin/catalog                 every model, per route its state; per route the engine's state and load
    GET  /admin/placement/{model}       the placement decision: candidates, scores, rejections (explain)
    POST /admin/models/load             {"model": ..., "route": optional}  -> loads it (single flight)
    POST /admin/models/unload           {"model": ..., "route": optional}  -> unloads it (never with requests in flight)
"""
from __future__ import annotations

from typing import Optional

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import ApiError


def _json(obj, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


async def _target(request: Request) -> tuple:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not JSON", code="invalid_json") from None
    model = body.get("model") if isinstance(body, dict) else None
    route: Optional[str] = body.get("route") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' (a string) is required", code="missing_model", param="model")
    if route is not None and not isinstance(route, str):
        raise ApiError(400, "'route' must be a string", code="invalid_route", param="route")
    return model, route


def catalog_router(host, dependencies: list, responses: dict) -> APIRouter:
    r = APIRouter(tags=["admin"], dependencies=dependencies, responses=responses)

    @r.get("/admin/catalog", summary="The model catalog and each catalogued engine's state")
    async def catalog():
        cat = host.catalog
        return _json({"models": cat.models(), "routes": cat.upstreams(), "loads_started": cat.flights.started})

    @r.get("/admin/placement/{model:path}", summary="Where a request for this model would go, and why")
    async def placement(model: str):
        return _json(host.catalog.place(model, full=True).to_dict())

    @r.post("/admin/models/load", summary="Load a model (placement picks the node unless 'route' is given)")
    async def load(request: Request):
        model, route = await _target(request)
        return _json(await host.catalog.load(model, route))

    @r.post("/admin/models/unload", summary="Unload a model (refused while it has requests in flight)")
    async def unload(request: Request):
        model, route = await _target(request)
        return _json(await host.catalog.unload(model, route))

    return r


def render_metrics(cat) -> str:
    """Prometheus series: per route the engine's queue depth and state, per model its state, loads by result."""
    out = ["# HELP homelab_router_engine_queue_depth Requests waiting in the engine's own queue (fresh figures only).",
           "# TYPE homelab_router_engine_queue_depth gauge"]
    ups = cat.upstreams()
    for route, u in ups.items():
        if u["engine_waiting"] is not None:
            out.append(f'homelab_router_engine_queue_depth{{route="{route}"}} {u["engine_waiting"]}')
    out += ["# HELP homelab_router_engine_state 1 for the state each catalogued route is in.",
            "# TYPE homelab_router_engine_state gauge"]
    for route, u in ups.items():
        out.append(f'homelab_router_engine_state{{route="{route}",state="{u["state"]}"}} 1')
    out += ["# HELP homelab_router_model_loads_total Model loads the router started, by result.",
            "# TYPE homelab_router_model_loads_total counter"]
    for (route, model, result), n in sorted(cat.loads.items()):
        out.append(f'homelab_router_model_loads_total{{route="{route}",model="{model}",result="{result}"}} {n}')
    return "\n".join(out) + "\n"
