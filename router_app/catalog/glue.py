"""The /v1 pipeline's catalog hooks (router_app/v1/pipeline.py calls these; nothing else in the hot path changes).

    keyword_fallback(ctx)    the caller's key may have unknown names routed by the keyword policy (opt-in per app)
    decide(app, ctx, view)   a model name the catalog answers for -> a route-pinned Decision on the placed node,
                             or a 503 (installed, but no live node); None: the policy decides as before
    prepare(app, ctx)        before dispatch: loads the model when it is not hot (single flight, bounded wait)
    before_route(app, ctx, route)
                             forward()'s hook for every other request (keyword-routed, `homelab/*` aliases, route
                             pins), before each route it tries: that route's own model (`model`, or
                             `embeddings_model` for /v1/embeddings) is made resident when the route is catalogued on
                             demand and its engine lists the model (the same single flight and wait as named models)
    finish(app, ctx)         after the answer: the models' in-flight counts go down, their idle clocks restart

While a request holds a model (from before its load to the end of its answer) eviction never touches that model.
A streamed request that has to wait for a load gets `ctx.notice(model, route)` called first (router_app/v1/notice.py:
an SSE comment before the first token).
"""
from __future__ import annotations

from typing import Optional

from ..decision.policy import Decision
from .model import HOT
from .service import unavailable


def decide(app, ctx, view):
    cat = getattr(app, "catalog", None)
    if cat is None or not cat.registry.index or not cat.claims(ctx.rt.policy, view.model):
        return None
    p = cat.place(view.model, ctx.allowed)
    if p.choice is None:
        if p.rejected and all(r["why"] in ("not installed", "this key may not use the route") for r in p.rejected):
            from ..errors import ApiError
            raise ApiError(403, f"this key may not use any route that serves '{view.model}'",
                           type="permission_error", code="route_forbidden")
        raise unavailable(view.model, p, cat.settings.retry_after_s)
    ctx.catalog = p
    return Decision(bucket="catalog", route=p.choice, reason="catalog_hot" if p.state == HOT else "catalog_load",
                    pin="route", has_image=view.has_image, est_tokens=view.est_tokens, fallback=[], spill=None)


def keyword_fallback(ctx) -> bool:
    """The caller's key is one whose unknown model names the keyword policy routes (catalog.route_unknown_models_apps)."""
    apps = ctx.rt.config.catalog.route_unknown_models_apps
    return bool(apps) and ctx.principal is not None and getattr(ctx.principal, "app", None) in apps


def _hold(app, ctx, route: str, model: str) -> None:
    app.catalog.begin(route, model)
    ctx.catalog_held.append((route, model))


async def _wait_for(app, ctx, p) -> None:
    if p.state != HOT:
        if ctx.notice is not None:
            await ctx.notice(p.model, p.choice)
        await app.catalog.ensure(p)


async def _revalidated(app, p, route: str):
    """A hot placement on a route that went down since the registry last read it: read the engine now (one call,
    only after an outage) and place again on that route."""
    reg = app.catalog.registry
    if p is None or p.state != HOT or not reg.outdated(route):
        return p
    await reg.refresh_route(route)
    again = app.catalog.place(p.model, only=route)
    return again if again.choice is not None else p


async def prepare(app, ctx) -> None:
    p = ctx.catalog = await _revalidated(app, ctx.catalog, ctx.catalog.choice)
    _hold(app, ctx, p.choice, p.model)
    await _wait_for(app, ctx, p)


def route_model(app, ctx, route: str) -> Optional[str]:
    """The model `route` is sent for this request when the catalog manages it there (on demand, listed), else None."""
    node = app.catalog.registry.nodes.get(route)
    r = ctx.rt.config.routes.get(route)
    if node is None or r is None or node.residency != "on_demand":
        return None
    model = (r.embeddings_model or r.model) if ctx.endpoint == "embeddings" else r.model
    return model if model in node.models else None


async def before_route(app, ctx, route: str) -> None:
    """Raises ApiError (503 model_unavailable / model_loading / model_load_failed): forward() fails over on it when
    the request may fall back, and answers it otherwise."""
    finish(app, ctx)              # a hold on the route tried before this one
    reg = app.catalog.registry
    node = reg.nodes.get(route)
    if node is None or node.residency != "on_demand":
        return
    if route not in reg.refreshed_at or reg.outdated(route):     # never read yet, or read before an outage
        await reg.refresh_route(route)
    model = route_model(app, ctx, route)
    if model is None:
        return
    if reg.nodes[route].models[model].state == HOT:     # the fast path: no placement to run
        _hold(app, ctx, route, model)
        return
    p = app.catalog.place(model, only=route)      # access was settled by the decision and the chain
    if p.choice is None:
        raise unavailable(model, p, app.catalog.settings.retry_after_s)
    _hold(app, ctx, route, model)
    await _wait_for(app, ctx, p)


def finish(app, ctx) -> None:
    for route, model in ctx.catalog_held:
        app.catalog.end(route, model)
    ctx.catalog_held.clear()
