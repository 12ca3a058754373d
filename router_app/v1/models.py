"""GET /v1/models and /v1/models/{id}: homelab/auto, homelab/<bucket>, every alias and every route's model id
(only the routes the caller's key may use)."""
from __future__ import annotations

from typing import Optional

from ..decision.config import AUTO_MODEL, BUCKET_PREFIX
from ..errors import ApiError
from .ctx import route_headers
from .errors import send_error, send_json


def model_list(policy, allowed, created: int, catalog=None) -> list:
    data, seen = [], set()

    def add(mid, owned, **extra):
        if mid not in seen:
            seen.add(mid)
            data.append({"id": mid, "object": "model", "created": created, "owned_by": owned, **extra})
    add(AUTO_MODEL, "homelab-router", homelab={"kind": "auto"})
    for b in policy.buckets:
        add(BUCKET_PREFIX + b, "homelab-router", homelab={"kind": "bucket", "route": policy.buckets[b]})
    for name, r in policy.routes.items():
        if allowed is not None and name not in allowed:
            continue
        for a in r.aliases:
            add(a, "homelab-router", homelab={"kind": "alias", "route": name})
        add(r.model, name, homelab={"kind": "route_model", "route": name, "vision": r.vision})
    if catalog is not None:       # issue 14: every model the engines have, from the registry (no engine call)
        for m in catalog.models():
            routes = {r: s for r, s in m["routes"].items() if allowed is None or r in allowed}
            if not routes:
                continue
            if m["id"] in seen:     # a route's own model id: its entry also says where it is and in what state
                for e in data:
                    if e["id"] == m["id"]:
                        e["homelab"]["states"] = routes
            else:
                add(m["id"], next(iter(routes)), homelab={"kind": "catalog", "states": routes})
    return data


async def serve_models(pipeline, scope, send, one: Optional[str] = None) -> None:
    app = pipeline.app
    ctx = pipeline.begin(scope, "models")
    try:
        pipeline.authenticate(ctx)
    except ApiError as err:
        ctx.stop_clock()
        return await send_error(send, err, route_headers(ctx))
    data = model_list(app.runtime.policy, ctx.allowed, int(app.metrics.started), getattr(app, "catalog", None))
    ctx.stop_clock()
    if one is None:
        return await send_json(send, 200, {"object": "list", "data": data}, route_headers(ctx))
    for m in data:
        if m["id"] == one:
            return await send_json(send, 200, m, route_headers(ctx))
    await send_error(send, ApiError(404, f"model '{one}' is not served here", code="model_not_found"),
                     route_headers(ctx))
