"""The decision for /v1/embeddings: a pinned route (header, alias, route name or model id), else embeddings.route.

Embeddings never fail over (another engine's vectors live in a different space), and a route is only chosen when
its config says it serves embeddings: a pin to any other route is a 400."""
from __future__ import annotations

from typing import Optional

from ..errors import ApiError
from .config import AUTO_MODEL, BUCKET_PREFIX
from .policy import Decision, Policy, unknown_model


def decide_embeddings(policy: Policy, body: dict, route_hdr: Optional[str], allowed) -> Decision:
    model = body.get("model") if isinstance(body.get("model"), str) else None
    route = reason = None
    if route_hdr:
        route = policy.resolve_route_name(route_hdr)
        if route is None:
            raise ApiError(400, f"unknown route '{route_hdr}' in X-Homelab-Route", code="unknown_route")
        reason = "header_pin"
    elif model and model != AUTO_MODEL:
        route = policy.aliases.get(model) or (model if model in policy.routes else None) \
            or policy.model_ids.get(model)
        if route is None:
            for n, r in policy.routes.items():
                if r.embeddings_model == model:
                    route = n
                    break
        reason = "model_pin" if route else None
        if route is None and not policy.route_unknown_models \
                and model not in {BUCKET_PREFIX + b for b in policy.buckets}:  # issue 11 item 6: 404
            raise unknown_model(model)
    pin = "route" if route else None
    if route is None:
        route = policy.embeddings_route
        if route is None:
            route = next((n for n, r in policy.routes.items() if r.embeddings), None)
        if route is None:
            raise ApiError(400, "no embeddings route is configured (embeddings.route)", code="no_embeddings_route")
        reason = "embeddings_route"
    elif not policy.routes[route].embeddings and route != policy.embeddings_route:
        can = ", ".join(n for n, r in policy.routes.items() if r.embeddings) or "none"
        raise ApiError(400, f"route '{route}' does not serve embeddings; routes with embeddings: {can}",
                       param="model", code="embeddings_unsupported")
    if allowed is not None and route not in allowed:
        raise ApiError(403, f"this key may not use route '{route}'", type="permission_error",
                       code="route_forbidden")
    return Decision(bucket="embeddings", route=route, reason=reason, pin=pin, has_image=False, est_tokens=0)
