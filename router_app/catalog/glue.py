"""The /v1 pipeline's catalog hooks (router_app/v1/pipeline.py calls these; nothing else in the hot path changes).

    keyword_fallback(ctx)    the caller's key may have unknown names routed by the keyword policy (opt-in per app)
    decide(app, ctx, view)   a model name the catalog answers for -> a route-pinned Decision on the placed node,
                             or a 503 (installed, but no live node); None: the policy decides as before
    prepare(app, ctx)        before dispatch: loads the model when it is not hot (single flight, bounded wait)
    finish(app, ctx)         after the answer: the model's in-flight count goes down, its idle clock restarts
"""
from __future__ import annotations

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


async def prepare(app, ctx) -> None:
    p = ctx.catalog
    app.catalog.begin(p.choice, p.model)
    ctx.catalog_begun = True
    await app.catalog.ensure(p)


def finish(app, ctx) -> None:
    if ctx.catalog is not None and ctx.catalog_begun:
        app.catalog.end(ctx.catalog.choice, ctx.catalog.model)
        ctx.catalog_begun = False
