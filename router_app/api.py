"""HTTP surface: the OpenAI-compatible /v1 endpoints (raw ASGI) in front of the operational endpoints (FastAPI).

`RouterApp` is the ASGI application uvicorn serves (uvloop + httptools). It routes by path prefix: /v1/* goes to
plain ASGI handlers here, which parse with orjson, do light checks and forward with one shared aiohttp session, with
no framework routing and no pydantic per request; every other path goes to the FastAPI app of router_app/ops.py
(/healthz, /metrics, /stats, /admin/*, /openapi.json). Lifespan is handled here once, for both.

Every /v1 response carries x-homelab-route, x-homelab-bucket, x-homelab-reason, x-homelab-overhead-ms and
x-request-id. Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}}.
"""
from __future__ import annotations

import asyncio
import hmac
import importlib
import itertools
import os
import signal
import time
from typing import Optional

import aiohttp
import orjson

from . import access_glue
from . import cors as cors_mod, responses_api    # issue 11 item 12 (new modules)
from .access_protocol import AccessControl, ApiError, OpenAccess
from .config import AUTO_MODEL, BUCKET_PREFIX, ConfigInvalid, RouterConfig, load_config
from .dispatch import Outcome, Runtime, forward
from .policy import Decision, Policy, decide, unknown_model, view_from_chat, view_from_completion
from .sse import SSEFilter
from .telemetry import Logs, Metrics, now_iso
from .upstreams import HealthChecker, build_states, new_session

JSON = b"application/json"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
BODY_TIMEOUT_S = 60.0     # the longest a client may take to send a request body


def build_access(cfg: RouterConfig) -> AccessControl:
    """router_app.access.build(cfg) when that module exists (keys, budgets, rate limits); else OpenAccess."""
    try:
        mod = importlib.import_module("router_app.access")
    except ImportError:
        return OpenAccess()
    builder = getattr(mod, "build", None)
    return builder(cfg) if builder else OpenAccess()


class Ctx:
    """Per-request facts shared by the steps of one /v1 call."""
    __slots__ = ("t0", "req_id", "endpoint", "rt", "body", "decision", "principal", "ticket", "stream",
                 "client_usage", "route", "bucket", "reason", "hops", "status", "usage", "overhead_ms",
                 "error_code")

    def __init__(self, t0, req_id, endpoint, rt):
        self.t0, self.req_id, self.endpoint, self.rt = t0, req_id, endpoint, rt
        self.body = None
        self.decision: Optional[Decision] = None
        self.principal = None
        self.ticket = None
        self.stream = False
        self.client_usage = False
        self.route = "none"
        self.bucket = "none"
        self.reason = "none"
        self.hops: list = []
        self.status = 0
        self.usage = None
        self.overhead_ms = 0.0
        self.error_code = None


class RouterApp:
    def __init__(self, config_path: Optional[str] = None, config: Optional[RouterConfig] = None,
                 access: Optional[AccessControl] = None):
        cfg = config if config is not None else load_config(config_path)
        self.config_path = config_path or cfg.source_path
        states = build_states(cfg)
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
        self.started = False
        self.v1_post = {
            "/v1/chat/completions": self.chat, "/v1/completions": self.completions,
            "/v1/embeddings": self.embeddings,
            "/v1/responses": self.responses,     # issue 11 item 12: Responses API by translation
        }
        from .ops import build_ops_app     # here: `explain` and `check-config` never import FastAPI
        self.ops = build_ops_app(self)     # everything outside /v1/

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
        self._flush_task = asyncio.get_running_loop().create_task(self._flusher())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError, ValueError):
            pass   # not the main thread (tests) or no signals on this platform
        self.started = True
        self.logs.events.write({"ts": now_iso(), "event": "start", "config": self.config_path,
                                "routes": list(self.runtime.states)})

    async def shutdown(self) -> None:
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
                                "detail": detail})

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
            # one assignment each: requests already running keep the runtime object they started with
            self.runtime = rt
            self.access = new_access
            self.metrics.reloads.inc(("ok",))
            self.logs.events.write({"ts": now_iso(), "event": "reload", "generation": rt.generation,
                                    "routes": list(rt.states)})
            return True, []

    # ================================================================================= ASGI
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith("/v1/"):     # the hot path: a dict lookup, no framework
                method = scope["method"]
                cors = self.runtime.config.cors        # issue 11 item 12: CORS for configured origins only
                if cors.allow_origins:
                    if method == "OPTIONS":
                        return await cors_mod.preflight(cors, scope, send)
                    send = cors_mod.wrap_send(cors, scope, send)
                if method == "POST":
                    h = self.v1_post.get(path)
                    if h is not None:
                        return await h(scope, receive, send)
                elif method == "GET" or method == "HEAD":
                    if path == "/v1/models":
                        return await self.models(scope, receive, send)
                    if path.startswith("/v1/models/"):
                        return await self.models(scope, receive, send, path[11:])
                known = path == "/v1/models" or path in self.v1_post
                return await self._send_error(send, ApiError(
                    405 if known else 404, f"{method} {path} is not served here",
                    code="method_not_allowed" if known else "not_found"))
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

    # ================================================================================= helpers
    @staticmethod
    async def _send(send, status: int, body: bytes, content_type: bytes = JSON, headers: list = ()) -> None:
        hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        hdrs.extend(headers)
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def _send_json(self, send, status: int, obj, headers: list = ()) -> None:
        await self._send(send, status, orjson.dumps(obj), JSON, headers)

    async def _send_error(self, send, err: ApiError, headers: list = ()) -> None:
        h = list(headers)
        for k, v in err.headers.items():
            h.append((k.lower().encode("latin-1"), str(v).encode("latin-1")))
        await self._send(send, err.status, orjson.dumps(err.body()), JSON, h)

    async def _read_body(self, scope, receive, limit: int) -> bytes:
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    raise ApiError(400, "invalid Content-Length header", code="invalid_request") from None
                if n > limit:
                    raise ApiError(413, f"request body is {n} bytes; the limit is {limit}",
                                   code="request_too_large", headers={"Connection": "close"})
                break
        # a client that stalls while sending its body gets a 408, never a hang
        try:
            if hasattr(asyncio, "timeout"):
                async with asyncio.timeout(BODY_TIMEOUT_S):
                    return await self._read_chunks(receive, limit)
            return await asyncio.wait_for(self._read_chunks(receive, limit), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ApiError(408, f"request body not received within {BODY_TIMEOUT_S:g}s",
                           code="request_timeout", headers={"Connection": "close"}) from None

    @staticmethod
    async def _read_chunks(receive, limit: int) -> bytes:
        chunks = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ApiError(400, "client disconnected", code="client_disconnected")
            b = msg.get("body", b"")
            if b:
                size += len(b)
                if size > limit:
                    raise ApiError(413, f"request body is over the limit of {limit} bytes",
                                   code="request_too_large", headers={"Connection": "close"})
                chunks.append(b)
            if not msg.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _is_admin(self, scope) -> None:
        key = self.admin_key
        if key:
            auth = None
            for k, v in scope["headers"]:
                if k == b"authorization":
                    auth = v.decode("latin-1")
                    break
            if not auth or not auth.startswith("Bearer ") \
                    or not hmac.compare_digest(auth[7:].strip().encode(), key.encode()):
                raise ApiError(401, "admin endpoints need Authorization: Bearer <admin key>",
                               type="authentication_error", code="invalid_admin_key")
        else:
            client = scope.get("client")
            host = client[0] if client else ""
            if host not in LOOPBACK:
                raise ApiError(403, "no admin key is configured: admin endpoints answer loopback clients only",
                               type="permission_error", code="admin_loopback_only")

    # ================================================================================= /v1 proxy
    async def chat(self, scope, receive, send):
        await self._proxy(scope, receive, send, "chat")

    async def completions(self, scope, receive, send):
        await self._proxy(scope, receive, send, "completions")

    async def embeddings(self, scope, receive, send):
        await self._proxy(scope, receive, send, "embeddings")

    async def responses(self, scope, receive, send):
        await responses_api.serve(self, scope, receive, send)   # translates, then self._proxy(..., "chat")

    def _decide_embeddings(self, rt: Runtime, body: dict, route_hdr: Optional[str], allowed) -> Decision:
        policy = rt.policy
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
        if allowed is not None and route not in allowed:
            raise ApiError(403, f"this key may not use route '{route}'", type="permission_error",
                           code="route_forbidden")
        return Decision(bucket="embeddings", route=route, reason=reason, pin=pin, has_image=False, est_tokens=0)

    async def _proxy(self, scope, receive, send, endpoint: str):
        t0 = time.perf_counter()
        rt = self.runtime           # this request finishes on this policy even if a reload swaps it
        access = self.access
        rid_in = authz = route_hdr = bucket_hdr = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authz = v.decode("latin-1")
            elif k == b"x-homelab-route":
                route_hdr = v.decode("latin-1").strip()
            elif k == b"x-homelab-bucket":
                bucket_hdr = v.decode("latin-1").strip()
            elif k == b"x-request-id":
                rid_in = v.decode("latin-1")[:64]
        ctx = Ctx(t0, rid_in or f"{self._id_prefix}-{next(self._ids)}", endpoint, rt)
        out: Optional[Outcome] = None
        try:
            raw = await self._read_body(scope, receive, rt.config.max_body_bytes)
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
            if not isinstance(body, dict):
                raise ApiError(400, "request body must be a JSON object", code="invalid_request")
            ctx.body = body
            if endpoint == "chat":
                msgs = body.get("messages")
                if not isinstance(msgs, list) or not msgs:
                    raise ApiError(400, "'messages' is required and must be a non-empty array", param="messages",
                                   code="missing_messages")
                for m in msgs:
                    if not isinstance(m, dict):
                        raise ApiError(400, "each message must be an object", param="messages",
                                       code="invalid_messages")
            elif endpoint == "completions":
                p = body.get("prompt")
                if not isinstance(p, (str, list)):
                    raise ApiError(400, "'prompt' is required (a string or an array)", param="prompt",
                                   code="missing_prompt")
            else:
                inp = body.get("input")
                if not isinstance(inp, (str, list)) or not inp:
                    raise ApiError(400, "'input' is required (a string or an array)", param="input",
                                   code="missing_input")
            client = scope.get("client")
            ctx.principal = principal = access.authenticate(authz, client[0] if client else "")
            allowed = access.allowed_routes(principal)
            if endpoint == "embeddings":
                d = self._decide_embeddings(rt, body, route_hdr, allowed)
            else:
                view = (view_from_chat if endpoint == "chat" else view_from_completion)(body, route_hdr, bucket_hdr)
                d = decide(rt.policy, view, rt.drained, allowed)
            ctx.decision = d
            ctx.route, ctx.bucket, ctx.reason = d.route, d.bucket, d.reason
            if d.pin == "route":
                access.check_pin(principal, d.route)
            ctx.ticket = access_glue.admit(access, principal, d, ctx, body)
            self.metrics.decisions.inc((d.bucket, d.route, d.reason))

            stream = endpoint != "embeddings" and body.get("stream") is True
            ctx.stream = stream
            build = self._body_builder(ctx, endpoint, stream)
            path = "/chat/completions" if endpoint == "chat" else ("/completions" if endpoint == "completions"
                                                                    else "/embeddings")
            out = await forward(rt, self.session, self.metrics, self.logs, d, path, build, stream, allowed,
                                ctx.req_id, fallback=endpoint != "embeddings")
            ctx.route, ctx.reason, ctx.hops = out.route, out.reason, out.hops
            if out.resp is not None:
                await self._send_stream(ctx, out, send, receive)
            else:
                out = await self.complete_nonstream(ctx, out)
                await self._send_nonstream(ctx, out, send)
        except ApiError as err:
            ctx.status = err.status
            ctx.error_code = err.code
            r = getattr(err, "route", None)
            if r:
                ctx.route, ctx.reason, ctx.hops = r, err.reason, err.hops
            ctx.overhead_ms = (time.perf_counter() - t0) * 1000
            self.metrics.rejected.inc((str(err.status), err.code or ""))
            try:
                await self._send_error(send, err, self._route_headers(ctx))
            except OSError:
                pass
        except Exception as exc:  # never a bare 500 page: an OpenAI-shaped 502 with the route headers
            ctx.status = 502
            self.logs.failures.write({"ts": now_iso(), "id": ctx.req_id, "route": ctx.route, "kind": "router",
                                      "error": f"{type(exc).__name__}: {exc}"})
            try:
                await self._send_error(send, ApiError(502, f"router error: {type(exc).__name__}",
                                                      type="server_error", code="router_error"),
                                       self._route_headers(ctx))
            except Exception:
                pass
        finally:
            if out is not None:
                out.close()
            self._account(ctx, access)

    def _body_builder(self, ctx: Ctx, endpoint: str, stream: bool):
        body = ctx.body
        if stream:
            so = body.get("stream_options")
            ctx.client_usage = isinstance(so, dict) and so.get("include_usage") is True

        def build(st) -> bytes:
            r = st.cfg
            if endpoint == "embeddings":
                body["model"] = r.embeddings_model or r.model
            else:
                body["model"] = r.model
                if stream and r.stream_usage and not ctx.client_usage:
                    so = body.get("stream_options")
                    body["stream_options"] = {**so, "include_usage": True} if isinstance(so, dict) \
                        else {"include_usage": True}
            return orjson.dumps(body)
        return build

    def _route_headers(self, ctx: Ctx) -> list:
        return [
            (b"x-homelab-route", ctx.route.encode("latin-1", "replace")),
            (b"x-homelab-bucket", ctx.bucket.encode("latin-1", "replace")),
            (b"x-homelab-reason", ctx.reason.encode("latin-1", "replace")),
            (b"x-homelab-overhead-ms", f"{ctx.overhead_ms:.3f}".encode()),
            (b"x-request-id", ctx.req_id.encode("latin-1", "replace")),
        ]

    async def complete_nonstream(self, ctx: Ctx, out: Outcome) -> Outcome:
        """The non-stream response step, kept separate on purpose: post-processing of a finished answer
        (usage accounting here; structured-output validation and escalation can be added here) happens before
        a single byte goes to the client."""
        if out.status == 200 and out.body[:1] == b"{":
            try:
                obj = orjson.loads(out.body)
                u = obj.get("usage") if isinstance(obj, dict) else None
                if isinstance(u, dict):
                    ctx.usage = u
            except orjson.JSONDecodeError:
                pass
        if ctx.ticket is not None or "response_format" in ctx.body:
            out = await access_glue.finish_nonstream(self, ctx, out)   # structured outputs; ledger commit
        return out

    async def _send_nonstream(self, ctx: Ctx, out: Outcome, send) -> None:
        ctx.status = out.status
        ctx.overhead_ms = (time.perf_counter() - ctx.t0 - out.upstream_s - out.queue_s) * 1000
        hdrs = self._route_headers(ctx)
        hdrs.extend(out.extra_headers)
        await self._send(send, out.status, out.body, out.content_type, hdrs)

    async def _send_stream(self, ctx: Ctx, out: Outcome, send, receive) -> None:
        """Forwards SSE events as they arrive (never buffered beyond one partial event)."""
        ctx.status = 200
        ctx.overhead_ms = (time.perf_counter() - ctx.t0 - out.upstream_s - out.queue_s) * 1000
        filt = SSEFilter(strip_usage=not ctx.client_usage)
        hdrs = [(b"content-type", out.content_type), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]
        hdrs.extend(self._route_headers(ctx))
        resp = out.resp
        gone = [False]

        async def watch():
            # the client going away closes the upstream response, so the engine's slot is given back at once
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    gone[0] = True
                    resp.close()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": hdrs})
            first = filt.feed(out.first_chunk or b"")
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in resp.content.iter_any():
                data = filt.feed(chunk)
                if data:
                    if filt.usage is not None and ctx.ticket is not None:   # commit before the last events go out
                        await access_glue.settle_stream(self.access, ctx, filt.usage)
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            tail = filt.flush()
            if filt.usage is not None and ctx.ticket is not None:
                await access_glue.settle_stream(self.access, ctx, filt.usage)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if gone[0]:
                ctx.status = 499
            else:
                kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "stream_broken"
                if out.state is not None:
                    out.state.mark_down(f"{kind} mid-stream: {type(exc).__name__}")
                self.metrics.upstream_failures.inc((out.route, kind))
                self.logs.failures.write({"ts": now_iso(), "id": ctx.req_id, "route": out.route, "kind": kind,
                                          "error": type(exc).__name__, "after_first_byte": True})
                ctx.status = 502
                err = orjson.dumps({"error": {"message": f"upstream stream broke ({kind}); nothing is retried "
                                                         "after the first byte", "type": "server_error",
                                              "param": None, "code": "upstream_stream_broken"}})
                try:
                    await send({"type": "http.response.body", "body": b"data: " + err + b"\n\n",
                                "more_body": False})
                except Exception:
                    pass
        except OSError:
            ctx.status = 499      # the client went away while we were writing
        finally:
            watcher.cancel()
            ctx.usage = filt.usage

    def _account(self, ctx: Ctx, access) -> None:
        now = time.perf_counter()
        latency_ms = (now - ctx.t0) * 1000
        status = ctx.status
        u = ctx.usage if isinstance(ctx.usage, dict) else None
        pt = u.get("prompt_tokens") if u else None
        ct = u.get("completion_tokens") if u else None
        m = self.metrics
        m.requests.inc((ctx.endpoint, ctx.route, ctx.bucket, str(status)))
        if status and status < 500 and ctx.route != "none":
            m.latency.observe((ctx.route,), latency_ms / 1000)
        m.overhead.observe((), ctx.overhead_ms)
        if pt:
            m.tokens.inc((ctx.route, "prompt"), pt)
        if ct:
            m.tokens.inc((ctx.route, "completion"), ct)
        d = ctx.decision
        rec = {
            "ts": now_iso(), "id": ctx.req_id, "endpoint": ctx.endpoint,
            "app": getattr(ctx.principal, "app", None),
            "bucket": ctx.bucket, "keywords": d.keywords if d else [], "scores": d.scores if d else {},
            "decided_route": d.route if d else None, "route": ctx.route, "reason": ctx.reason,
            "pin": d.pin if d else None, "has_image": d.has_image if d else False,
            "skipped": d.path if d else [],     # issue 11 item 9: routes passed over (drained / forbidden)
            "est_tokens": d.est_tokens if d else 0,
            "fallback_path": [h["route"] + ":" + h["event"] for h in ctx.hops],
            "status": status, "stream": ctx.stream, "latency_ms": round(latency_ms, 3),
            "overhead_ms": round(ctx.overhead_ms, 3), "prompt_tokens": pt, "completion_tokens": ct,
        }
        self.logs.decisions.write(rec)
        if ctx.ticket is not None:
            try:
                access.settle(ctx.ticket, u, route=ctx.route, bucket=ctx.bucket, status=status,
                              latency_ms=latency_ms)
            except Exception:
                pass
            try:
                access.release(ctx.ticket)
            except Exception:
                pass
        else:
            access_glue.observe(access, ctx, u, latency_ms)   # audit line for refused / open-mode calls

    # ================================================================================= other endpoints
    async def models(self, scope, receive, send, one: Optional[str] = None):
        try:
            authz = None
            for k, v in scope["headers"]:
                if k == b"authorization":
                    authz = v.decode("latin-1")
            client = scope.get("client")
            principal = self.access.authenticate(authz, client[0] if client else "")
            allowed = self.access.allowed_routes(principal)
        except ApiError as err:
            return await self._send_error(send, err)
        policy = self.runtime.policy
        now = int(self.metrics.started)
        data, seen = [], set()

        def add(mid, owned, **extra):
            if mid not in seen:
                seen.add(mid)
                data.append({"id": mid, "object": "model", "created": now, "owned_by": owned, **extra})
        add(AUTO_MODEL, "homelab-router", homelab={"kind": "auto"})
        for b in policy.buckets:
            add(BUCKET_PREFIX + b, "homelab-router", homelab={"kind": "bucket", "route": policy.buckets[b]})
        for name, r in policy.routes.items():
            if allowed is not None and name not in allowed:
                continue
            for a in r.aliases:
                add(a, "homelab-router", homelab={"kind": "alias", "route": name})
            add(r.model, name, homelab={"kind": "route_model", "route": name, "vision": r.vision})
        if one is None:
            return await self._send_json(send, 200, {"object": "list", "data": data})
        for m in data:
            if m["id"] == one:
                return await self._send_json(send, 200, m)
        await self._send_error(send, ApiError(404, f"model '{one}' is not served here", code="model_not_found"))

    def set_drained(self, route: str, drain: bool) -> dict:
        """POST /admin/drain|undrain/{route}: ApiError(404) for an unknown route."""
        rt = self.runtime
        st = rt.states.get(route)
        if st is None:
            raise ApiError(404, f"unknown route '{route}'; routes: {', '.join(rt.states)}", code="unknown_route")
        st.drained = drain
        rt.refresh_drained()
        self.logs.events.write({"ts": now_iso(), "event": "drain" if drain else "undrain", "route": route})
        return {"route": route, "drained": drain}


def create_app(config_path: Optional[str] = None, config: Optional[RouterConfig] = None,
               access: Optional[AccessControl] = None) -> RouterApp:
    return RouterApp(config_path=config_path, config=config, access=access)
