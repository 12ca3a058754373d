"""The operational HTTP surface, served through FastAPI: health, metrics, stats and the admin endpoints.

The /v1 hot path never comes here: `RouterApp.__call__` (router_app/v1/app.py) hands /v1/* to its raw ASGI handlers
and every other path to the app built by `build_ops_app`. That keeps framework routing and pydantic off the request
path while the operational endpoints get an OpenAPI description (`/openapi.json`, `/docs`).

Rules kept from the raw handlers they replace:

* Every handler is `async def`, so it runs on the event loop like the /v1 path and reads route state without locks
  (a plain `def` handler or dependency would run in a worker thread).
* Admin endpoints need `Authorization: Bearer <admin key>`; with no admin key configured they answer loopback
  clients only; /metrics and /stats take the admin key or a loopback client (router_app/ops/auth.py).
* Errors are OpenAI-shaped: `{"error": {"message", "type", "param", "code"}}`, including 404 for an unknown path (/admin/* too)
  and 405 for a known path with the wrong method.
* Answers are rendered with orjson and returned as responses, so the response models below document the shapes
  without re-validating every answer (tests/router/test_ops.py checks that real answers fit them).
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, Union

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ..cloud import spend as cloud_spend
from ..catalog.admin import catalog_router, render_metrics as catalog_metrics
from ..errors import ApiError
from ..hub import api as hub_api
from ..hub import metrics as hub_metrics
from .auth import check_admin, check_observer
from .telemetry import now_iso

PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class OrjsonResponse(JSONResponse):
    """A JSONResponse (so OpenAPI documents the response model, not a string) rendered with orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(err: ApiError) -> Response:
    return OrjsonResponse(err.body(), status_code=err.status, headers={k: str(v) for k, v in err.headers.items()})


# ===================================================================================== response models (OpenAPI)
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class RouteSnapshot(BaseModel):
    url: str
    model: str
    healthy: bool
    drained: bool                           # an operator's drain
    drained_by_hub: Optional[str] = None    # the stale node the hub drained this route for (auto-undrained)
    in_flight: int
    queued: int
    max_concurrency: int
    max_queue: int
    vision: bool
    terminal: bool
    last_error: Optional[str] = None
    last_error_at: Optional[float] = None
    last_ok_at: Optional[float] = None


class Upstreams(BaseModel):
    routes: dict[str, RouteSnapshot]
    config_generation: int


class RouteStatus(BaseModel):
    in_flight: int
    queued: int
    healthy: bool
    drained: bool
    drained_by_hub: Optional[str] = None


class Stats(_Open):
    """The counters of /metrics as JSON (each a list of label sets with a value), plus route state."""
    uptime_s: float
    requests: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    routes: dict[str, RouteStatus]
    config_generation: int


class DrainResult(BaseModel):
    route: str
    drained: bool
    drained_by_hub: Optional[str] = None    # still skipped by auto-routing after an undrain while this is set


class Reloaded(BaseModel):
    status: str
    generation: int
    routes: list[str]


class ConfigErrorItem(BaseModel):
    path: str
    message: str


class ReloadRefused(ErrorBody):
    errors: list[ConfigErrorItem]


class KeyUsage(_Open):
    tokens_today: int
    tokens_this_month: int


class KeyInfo(_Open):
    app: str
    key_id: str
    routes: Optional[list[str]] = None
    models: Optional[list[str]] = None
    rpm: Optional[int] = None
    tokens_per_day: Optional[int] = None
    tokens_per_month: Optional[int] = None
    allowed_routes: Optional[list[str]] = None
    usage: Optional[KeyUsage] = None
    budget_left: Optional[dict[str, Union[int, str, None]]] = None


class KeysReport(BaseModel):
    access: dict[str, Any]
    keys: list[KeyInfo]


ADMIN_ERRORS = {401: {"model": ErrorBody, "description": "An admin key is configured and the request lacks it"},
                403: {"model": ErrorBody, "description": "No admin key is configured and the client is not loopback"}}

OBSERVER_ERRORS = {401: {"model": ErrorBody, "description": "Not loopback, and without the admin key"},
                   403: {"model": ErrorBody, "description": "No admin key is configured and the client is not "
                                                             "loopback"}}

TAGS = [
    {"name": "health", "description": "Liveness for load balancers and service managers."},
    {"name": "observability", "description": "Prometheus metrics and the same counters as JSON. Loopback clients, "
                                             "or `Authorization: Bearer <admin key>`."},
    {"name": "admin", "description": "Route control, config reload and key usage. `Authorization: Bearer <admin "
                                     "key>`; with no admin key configured, loopback clients only."},
]


class OpsHost(Protocol):
    """What the operational app reads from the process that serves it (router_app.v1.app.RouterApp)."""
    metrics: Any
    runtime: Any
    access: Any
    admin_key: Optional[str]

    async def reload(self) -> tuple: ...

    def set_drained(self, route: str, drain: bool) -> dict: ...


# ===================================================================================== the app
def build_ops_app(router: OpsHost) -> FastAPI:
    from .. import __version__

    app = FastAPI(
        title="homelab-router operations",
        version=__version__,
        description="Health, metrics, stats and admin endpoints of homelab-router. The OpenAI-compatible `/v1/*` "
                    "endpoints are served by a plain ASGI handler in front of this app and are not listed here.",
        openapi_tags=TAGS,
        default_response_class=OrjsonResponse,
        redoc_url=None,
    )
    app.router.redirect_slashes = False     # /healthz/ is a 404, as before, never a redirect

    bearer = HTTPBearer(auto_error=False, description="The admin key (env var named by admin_key_env)")

    async def require_admin(request: Request, _creds=Depends(bearer)) -> None:
        try:
            who = check_admin(request.scope, router.admin_key, router.access)
        except ApiError as err:
            if err.status == 403 and err.code == "scope_missing":
                admin_audit(request, getattr(err, "principal", None), "refused", err.code)
            raise
        request.state.admin_principal = who
        admin_audit(request, who, "allowed")

    def admin_audit(request: Request, who: Optional[str], outcome: str, error: Optional[str] = None) -> None:
        """<log_dir>/admin-audit.jsonl: one line per /admin/* call that passed auth, and per scope refusal."""
        rec = {"ts": now_iso(), "who": who, "method": request.method,
               "path": request.url.path, "outcome": outcome,
               "client": request.client.host if request.client else None}
        if error:
            rec["error"] = error
        try:
            router.logs.admin.write(rec)
        except AttributeError:      # a host without the admin log (test doubles)
            pass

    async def require_observer(request: Request, _creds=Depends(bearer)) -> None:
        check_observer(request.scope, router.admin_key)

    admin = [Depends(require_admin)]
    observer = [Depends(require_observer)]

    # ------------------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> Response:
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        method, path = request.method, request.url.path
        if exc.status_code == 405:
            err = ApiError(405, f"{method} {path} is not served here", code="method_not_allowed",
                           headers=exc.headers)
        elif exc.status_code == 404:
            err = ApiError(404, f"{method} {path} is not served here", code="not_found")
        else:   # pragma: no cover - nothing else raises HTTPException here
            err = ApiError(exc.status_code, str(exc.detail), code="http_error", headers=exc.headers)
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return error_response(ApiError(500, f"router error: {type(exc).__name__}", type="server_error",
                                       code="router_error"))

    # ------------------------------------------------------------------------- health and observability
    @app.get("/healthz", tags=["health"], summary="Liveness", response_model=Health)
    async def healthz():
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/metrics", tags=["observability"], summary="Prometheus metrics", dependencies=observer,
             response_class=Response, responses={200: {"content": {PROM_CONTENT_TYPE: {}},
                                                       "description": "Prometheus text exposition format"},
                                                  **OBSERVER_ERRORS})
    async def metrics():
        text = router.metrics.render(router.runtime.states)
        extra = getattr(router.access, "render_metrics", None)   # per-app series (labels app, route)
        if extra:
            text += extra()
        text += cloud_spend.of(router).render()                  # issue 18: cloud spend, saved vs cloud
        cat = getattr(router, "catalog", None)      # issue 14: engine queue depth and state per route
        if cat is not None and cat.active:
            text += catalog_metrics(cat)
        if getattr(router, "hub", None) is not None:    # nodes and commands (router_app/hub)
            text += hub_metrics.render(router.hub)
        return Response(text.encode(), media_type=PROM_CONTENT_TYPE)

    @app.get("/stats", tags=["observability"], summary="Counters as JSON, route state, config generation",
             response_model=Stats, dependencies=observer, responses=OBSERVER_ERRORS)
    async def stats():
        s = router.metrics.as_json(router.runtime.states)
        s["config_generation"] = router.runtime.generation
        s["cloud"] = cloud_spend.of(router).as_json()
        return OrjsonResponse(s)

    # ------------------------------------------------------------------------- admin
    @app.get("/admin/upstreams", tags=["admin"], summary="Per-route health, drain, load and caps",
             response_model=Upstreams, dependencies=admin, responses=ADMIN_ERRORS)
    async def upstreams():
        rt = router.runtime
        routes = {n: s.snapshot() for n, s in rt.states.items()}
        cat = getattr(router, "catalog", None)      # issue 14: the engine's own state (busy/loading/sleeping/down)
        for n, info in (cat.upstreams() if cat is not None else {}).items():
            if n in routes:
                routes[n]["engine"] = info
        return OrjsonResponse({"routes": routes, "config_generation": rt.generation})

    drain_errors = {**ADMIN_ERRORS, 404: {"model": ErrorBody, "description": "No route of that name"}}

    @app.post("/admin/drain/{route:path}", tags=["admin"], summary="Drain a route",
              description="Auto-routed traffic skips a drained route (its failover chain takes it); route pins "
                          "still reach it.", response_model=DrainResult, dependencies=admin, responses=drain_errors)
    async def drain(route: str):
        return OrjsonResponse(router.set_drained(route, True))

    @app.post("/admin/undrain/{route:path}", tags=["admin"], summary="Undrain a route",
              response_model=DrainResult, dependencies=admin, responses=drain_errors)
    async def undrain(route: str):
        return OrjsonResponse(router.set_drained(route, False))

    @app.post("/admin/reload-config", tags=["admin"], summary="Re-read the config file",
              description="Validates the file the router was started with in full and swaps it in atomically; "
                          "requests already running finish on the old policy. An invalid file is refused (422, "
                          "every error listed) and the old policy keeps serving. SIGHUP does the same.",
              response_model=Reloaded, dependencies=admin,
              responses={**ADMIN_ERRORS, 422: {"model": ReloadRefused, "description": "The file is invalid"}})
    async def reload_config():
        ok, errors = await router.reload()
        if ok:
            return OrjsonResponse({"status": "reloaded", "generation": router.runtime.generation,
                                   "routes": list(router.runtime.states)})
        msg = "config refused; the previous policy keeps serving: " + "; ".join(str(e) for e in errors)
        body = ApiError(422, msg, code="config_invalid").body()
        body["errors"] = [{"path": e.path, "message": e.message} for e in errors]
        return OrjsonResponse(body, status_code=422)

    @app.get("/admin/keys", tags=["admin"], summary="API keys (never secrets) with usage and budget left",
             response_model=KeysReport, dependencies=admin, responses=ADMIN_ERRORS)
    async def keys():
        rep = getattr(router.access, "keys_report", None)
        st = getattr(router.access, "status", None)
        return OrjsonResponse({"access": st() if st else {"auth": "off"}, "keys": rep() if rep else []})

    if hasattr(router, "catalog"):
        app.include_router(catalog_router(router, admin, ADMIN_ERRORS))
    # the hub (router_app/hub): /admin/nodes, commands, command-kinds, recover-cuda, events, proxmox/guests
    app.include_router(hub_api.build_admin_router(router, admin, ADMIN_ERRORS))
    return app
