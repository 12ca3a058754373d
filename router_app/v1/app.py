"""The ASGI application uvicorn serves (uvloop + httptools): the /v1 OpenAI surface in front of the operational app.

`RouterApp` routes by path prefix: /v1/* goes to the raw ASGI request pipeline (router_app/v1/pipeline.py: orjson,
one shared aiohttp session, no framework routing and no pydantic per request); every other path goes to the FastAPI
app of router_app/ops/app.py (/healthz, /metrics, /stats, /admin/*, /openapi.json). It owns what lives as long as
the process: the runtime (config, policy, route states; swapped whole on reload), access control, metrics, logs,
the HTTP session and the health checker. Lifespan is handled here once, for both apps.

Every /v1 answer carries x-homelab-route, x-homelab-bucket, x-homelab-reason, x-homelab-overhead-ms and
x-request-id. Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}}.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from typing import Optional

from ..access.config import resolve_store_path, settings_from
from ..access.controller import build as build_access_control
from ..access.protocol import AccessControl
from ..catalog.service import CatalogService
from ..decision.config import ConfigInvalid, RouterConfig, load_config
from ..decision.policy import Policy
from ..dispatch import drains
from ..dispatch.forward import Runtime
from ..dispatch.upstreams import HealthChecker, build_states, new_session
from ..errors import ApiError
from ..hub import agent_asgi
from ..hub.service import Hub, default_store_path
from ..ops import readfirst
from ..ops.app import build_ops_app
from ..ops.telemetry import Logs, Metrics, now_iso
from . import body as _body
from . import cors as cors_mod
from . import responses
from .ctx import begin, route_headers
from .errors import send_error
from .models import serve_models
from .pipeline import Pipeline


def build_access(cfg: RouterConfig) -> AccessControl:
    """Keys, budgets and rate limits (router_app/access); with auth off it admits everyone."""
    return build_access_control(cfg)


class RouterApp:
    def __init__(self, config_path: Optional[str] = None, config: Optional[RouterConfig] = None,
                 access: Optional[AccessControl] = None):
        cfg = config if config is not None else load_config(config_path)
        self.config_path = config_path or cfg.source_path
        self.state_path = drains.state_path(resolve_store_path(settings_from(cfg), cfg))
        states = build_states(cfg)
        for name in drains.load_drained(self.state_path):
            if name in states:
                states[name].drained = True
        self.runtime = Runtime(cfg, Policy(cfg), states)
        self.runtime.refresh_drained()
        self.access: AccessControl = access if access is not None else build_access(cfg)
        self._fixed_access = access is not None
        self.metrics = Metrics()
        self.logs = Logs(cfg.log_dir, cfg.logs.max_bytes, cfg.logs.backups)
        self.session = None
        self.loop = None
        self.health: Optional[HealthChecker] = None
        self._reload_lock: Optional[asyncio.Lock] = None
        self._flush_task = None
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}{int(time.time()) & 0xffff:04x}"
        self.body_timeout_s = _body.BODY_TIMEOUT_S
        self.started = False
        self.pipeline = Pipeline(self)
        self.catalog = CatalogService(self)     # issue 14: engines' models, residency, placement
        self.hub: Optional[Hub] = None      # the control plane (router_app/hub), when hub.enabled
        if cfg.hub.enabled:
            hub_db = cfg.hub.store_path or default_store_path(resolve_store_path(settings_from(cfg), cfg))
            self.hub = Hub(cfg.hub, hub_db, host=self)
            self.hub.tap(self.logs)
        self.v1_post = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
                        "/v1/embeddings": "embeddings", "/v1/responses": "responses"}
        self.ops = build_ops_app(self)     # everything outside /v1/

    def new_request_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    # ================================================================================= lifecycle
    @property
    def admin_key(self) -> Optional[str]:
        env = self.runtime.config.admin_key_env
        return os.environ.get(env) or None if env else None

    async def startup(self) -> None:
        if self.started:
            return
        self.loop = asyncio.get_running_loop()
        self.session = new_session()
        self._reload_lock = asyncio.Lock()
        self.health = HealthChecker(lambda: self.runtime, self.session, self._health_changed)
        self.health.start()
        await self.catalog.start()
        self._flush_task = asyncio.get_running_loop().create_task(self._flusher())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError, ValueError):
            pass   # not the main thread (tests) or no signals on this platform
        if self.hub:
            await self.hub.start()
        self.started = True
        self.logs.events.write({"ts": now_iso(), "event": "start", "config": self.config_path,
                                "routes": list(self.runtime.states), "drained": sorted(self.runtime.drained)})

    async def shutdown(self) -> None:
        await self.catalog.stop()
        if self.hub:
            await self.hub.stop()
        if self.health:
            await self.health.stop()
        if self._flush_task:
            self._flush_task.cancel()
        if self.session:
            await self.session.close()
        close = getattr(self.access, "close", None)
        if close:
            try:
                close()
            except Exception:
                pass
        self.logs.close()
        self.started = False

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.logs.flush()

    def _health_changed(self, st, detail) -> None:
        self.logs.events.write({"ts": now_iso(), "event": "health", "route": st.name, "healthy": st.healthy,
                                "detail": detail, "source": "probe"})

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> tuple[bool, list]:
        """Re-reads the config file; validates fully; swaps atomically. Returns (ok, errors)."""
        async with self._reload_lock:
            try:
                cfg = load_config(self.config_path)
            except ConfigInvalid as exc:
                self.metrics.reloads.inc(("refused",))
                self.logs.events.write({"ts": now_iso(), "event": "reload_refused",
                                        "errors": [str(e) for e in exc.errors]})
                return False, exc.errors
            old = self.runtime
            rt = Runtime(cfg, Policy(cfg), build_states(cfg, old.states), old.generation + 1)
            rt.refresh_drained()
            upd = getattr(self.access, "update_config", None)   # keeps its store, counters and writer thread
            if upd:
                upd(cfg)
            new_access = self.access if (self._fixed_access or upd) else build_access(cfg)
            self.logs.reconfigure(cfg.log_dir, cfg.logs.max_bytes, cfg.logs.backups)
            if self.hub:    # agents and timings follow the file; turning the hub on or off takes a restart
                self.hub.update(cfg.hub)
                self.hub.tap(self.logs)
            # one assignment each: requests already running keep the runtime object they started with
            self.runtime = rt
            self.access = new_access
            self.catalog.registry.sync_config()
            self.metrics.reloads.inc(("ok",))
            self.logs.events.write({"ts": now_iso(), "event": "reload", "generation": rt.generation,
                                    "routes": list(rt.states)})
            return True, []

    def set_drained(self, route: str, drain: bool) -> dict:
        """POST /admin/drain|undrain/{route}: ApiError(404) for an unknown route. Persisted beside the store."""
        rt = self.runtime
        st = rt.states.get(route)
        if st is None:
            raise ApiError(404, f"unknown route '{route}'; routes: {', '.join(rt.states)}", code="unknown_route")
        st.drained = drain
        rt.refresh_drained()
        err = drains.save_drained(self.state_path, rt.drained)
        rec = {"ts": now_iso(), "event": "drain" if drain else "undrain", "route": route}
        if err:
            rec["persist_error"] = err
        self.logs.events.write(rec)
        out = {"route": route, "drained": drain}
        if st.hub_drained:      # the route stays out of auto-routing until that node's agent beats again
            out["drained_by_hub"] = st.hub_drained
        return out

    # ================================================================================= ASGI
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            # no answer before the body is in (bounded): behind a proxy an early 401 could be lost (ops/readfirst.py)
            receive, send = readfirst.wrap(scope, receive, send, self.runtime.config.max_body_bytes)
            path = scope["path"]
            if path.startswith("/v1/"):     # the hot path: a dict lookup, no framework
                method = scope["method"]
                cors = self.runtime.config.cors        # issue 11 item 12: CORS for configured origins only
                if cors.allow_origins:
                    if method == "OPTIONS":
                        return await cors_mod.preflight(cors, scope, send)
                    send = cors_mod.wrap_send(cors, scope, send)
                if method == "POST":
                    endpoint = self.v1_post.get(path)
                    if endpoint == "responses":     # issue 11 item 12: the Responses API, by translation
                        return await responses.serve(self.pipeline, scope, receive, send)
                    if endpoint is not None:
                        return await self.pipeline.handle(scope, receive, send, endpoint)
                elif method == "GET" or method == "HEAD":
                    if path == "/v1/models":
                        return await serve_models(self.pipeline, scope, send)
                    if path.startswith("/v1/models/"):
                        return await serve_models(self.pipeline, scope, send, path[11:])
                known = path == "/v1/models" or path in self.v1_post
                ctx = begin(scope, "other", self.runtime, self.new_request_id)
                return await send_error(send, ApiError(
                    405 if known else 404, f"{method} {path} is not served here",
                    code="method_not_allowed" if known else "not_found"), route_headers(ctx))
            if path.startswith("/hub/agent/") and self.hub is not None:    # node agents: raw ASGI too
                return await agent_asgi.serve(self.hub, scope, receive, send)
            if scope["method"] == "HEAD":   # HEAD is GET without the body: the server drops it (its scope says HEAD)
                scope = dict(scope, method="GET")
            return await self.ops(scope, receive, send)
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        return await self.ops(scope, receive, send)     # websocket: FastAPI closes it

    async def _lifespan(self, receive, send):
        """Starts and stops the RouterApp once; the FastAPI app holds no state of its own to start."""
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                    await send({"type": "lifespan.startup.complete"})
                except Exception as exc:  # pragma: no cover
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(config_path: Optional[str] = None, config: Optional[RouterConfig] = None,
               access: Optional[AccessControl] = None) -> RouterApp:
    return RouterApp(config_path=config_path, config=config, access=access)
