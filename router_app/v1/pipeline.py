"""The /v1 request pipeline: small named steps that read in order.

    begin          headers only: request id, Authorization, X-Homelab-Route/Bucket
    authenticate   on the headers (a 401 still waits for the body's end: router_app/ops/readfirst.py)
    read_body      413 over the limit, 408 when the client stalls
    parse          JSON object, nesting, shapes (router_app/v1/body.py): bad input is a 400 before any slot
    decide         the policy (router_app/decision): route, bucket, reason; 400/403 for impossible pins
    admit          access control: budgets, rate limits, json_schema checks (429/400)
    dispatch       spill/failover along the chain (router_app/dispatch): a slot is held from here...
    complete       non-stream post-processing (usage, structured outputs, ledger commit)
    respond        the answer, or the stream relayed event by event
    account        ...to here: slot, ticket and reservation given back; metrics, decision log, ledger, audit

From `decide` to `respond` the request runs under `until_disconnect`: a client that leaves cancels it, which closes
the engine request and gives the slot back at once; such a call is accounted as 499 (client closed request).

`run_parsed(ctx, body, send, receive, respond=...)` runs everything after `parse` on a body that is already a
checked chat body, with an optional `respond` step of the caller's own (a translating surface such as the
Responses API builds its answer from the Outcome).
"""
from __future__ import annotations

import asyncio
import functools
from typing import Awaitable, Callable, Optional

import orjson

from ..access import glue as access_glue
from ..cloud import spend as cloud_spend
from ..catalog import glue as catalog_glue
from ..catalog import keep_alive
from ..decision.embeddings import decide_embeddings
from ..decision.policy import decide, view_from_chat, view_from_completion
from ..dispatch.forward import Outcome, forward
from ..errors import ApiError
from ..ops.telemetry import now_iso
from . import body as B
from . import notice
from .account import account
from .ctx import Ctx, begin, route_headers
from .errors import send_error
from .respond import send_nonstream, send_stream

PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
Respond = Callable[[Ctx, Outcome, object], Awaitable[None]]


class ClientGone(Exception):
    """The client closed the connection before the answer was complete."""


async def until_disconnect(receive, coro):
    """Awaits `coro` in this task; raises ClientGone when the client disconnects first. A small watcher task reads
    `receive` (after the body, the only message left is http.disconnect) and cancels this task when it comes."""
    task = asyncio.current_task()
    gone = False

    async def watch():
        nonlocal gone
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                gone = True
                task.cancel()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await coro
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:     # our cancel, not the server's: the client left
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()


class Pipeline:
    def __init__(self, app):
        self.app = app      # the RouterApp: runtime, access, session, metrics, logs (read per request)

    # the names access/glue.py reads from the object it is handed
    @property
    def access(self):
        return self.app.access

    @property
    def session(self):
        return self.app.session

    @property
    def metrics(self):
        return self.app.metrics

    @property
    def logs(self):
        return self.app.logs

    # ================================================================================= the whole call
    async def handle(self, scope, receive, send, endpoint: str) -> None:
        ctx = self.begin(scope, endpoint)
        try:
            self.authenticate(ctx)
            raw = await self.read_body(ctx, scope, receive)
            body = self.parse(raw, endpoint)
        except ApiError as err:
            await self.refuse(ctx, err, send)
            account(self.app, ctx, self.app.access)
            return
        await self.run_parsed(ctx, body, send, receive)

    async def run_parsed(self, ctx: Ctx, body: dict, send, receive, respond: Optional[Respond] = None) -> None:
        access = self.app.access
        try:
            await until_disconnect(receive, self.serve(ctx, body, send, respond or self.respond))
        except ClientGone:
            ctx.status = 499
            ctx.error_code = "client_closed_request"
            ctx.stop_clock()
        except ApiError as err:
            await self.refuse(ctx, err, send)
        except Exception as exc:    # never a bare 500 page: an OpenAI-shaped 502 with the route headers
            self.app.logs.failures.write({"ts": now_iso(), "id": ctx.req_id, "route": ctx.route, "kind": "router",
                                          "error": f"{type(exc).__name__}: {exc}"})
            await self.refuse(ctx, ApiError(502, f"router error: {type(exc).__name__}", type="server_error",
                                            code="router_error"), send)
        finally:
            account(self.app, ctx, access)

    async def serve(self, ctx: Ctx, body: dict, send, respond: Respond) -> None:
        ctx.body = body
        if respond == self.respond and self.app.catalog.active:    # chat/completions streams: the loading notice
            notice.arm(self.app, ctx, send)
        self.decide(ctx)
        self.admit(ctx)
        try:
            out = await self.dispatch(ctx)
            try:
                if out.resp is None:
                    out = await self.complete(ctx, out)
                await respond(ctx, out, send)
                keep_alive.after_answer(self.app, ctx, out.status)   # issue 12: Ollama's per-model keep_alive
            finally:
                out.close()
        finally:
            if ctx.catalog_held:
                catalog_glue.finish(self.app, ctx)

    # ================================================================================= the steps
    def begin(self, scope, endpoint: str) -> Ctx:
        return begin(scope, endpoint, self.app.runtime, self.app.new_request_id)

    def authenticate(self, ctx: Ctx) -> None:
        access = self.app.access
        ctx.principal = access.authenticate(ctx.authz, ctx.client_host)
        ctx.allowed = access.allowed_routes(ctx.principal)

    async def read_body(self, ctx: Ctx, scope, receive) -> bytes:
        t = asyncio.get_running_loop().time()
        try:
            return await B.read_body(scope, receive, ctx.rt.config.max_body_bytes, self.app.body_timeout_s)
        finally:
            ctx.body_s = asyncio.get_running_loop().time() - t

    @staticmethod
    def parse(raw: bytes, endpoint: str) -> dict:
        return B.parse_body(raw, endpoint)

    def decide(self, ctx: Ctx) -> None:
        rt, body = ctx.rt, ctx.body
        if ctx.endpoint == "embeddings":
            d = decide_embeddings(rt.policy, body, ctx.route_hdr, ctx.allowed)
        else:
            view = (view_from_chat if ctx.endpoint == "chat" else view_from_completion)(
                body, ctx.route_hdr, ctx.bucket_hdr)
            try:
                d = catalog_glue.decide(self.app, ctx, view) or decide(rt.policy, view, rt.drained, ctx.allowed)
            except ApiError as err:       # issue 14: per-key opt-in to keyword routing of unknown model names
                if err.code != "model_not_found" or not catalog_glue.keyword_fallback(ctx):
                    raise
                view.model = None
                d = decide(rt.policy, view, rt.drained, ctx.allowed)
        ctx.decision = d
        ctx.route, ctx.bucket, ctx.reason = d.route, d.bucket, d.reason
        if d.pin == "route":
            self.app.access.check_pin(ctx.principal, d.route)

    def admit(self, ctx: Ctx) -> None:
        ctx.ticket = access_glue.admit(self.app.access, ctx.principal, ctx.decision, ctx, ctx.body)
        d = ctx.decision
        if d.route in ctx.rt.policy.cloud:     # issue 18: the money budget of the key's app
            b = ctx.body
            ctx.cloud_hold = cloud_spend.of(self.app).admit(
                getattr(ctx.principal, "app", None), d.route, d.est_tokens,
                b.get("max_completion_tokens") or b.get("max_tokens"), ctx.rt.config.default_reserve_tokens)
        self.app.metrics.decisions.inc((d.bucket, d.route, d.reason))

    async def dispatch(self, ctx: Ctx) -> Outcome:
        ctx.stream = ctx.endpoint != "embeddings" and ctx.body.get("stream") is True
        app = self.app
        before = None
        if ctx.catalog is not None:       # issue 14: load on demand (single flight) before the engine sees it
            await catalog_glue.prepare(app, ctx)
        elif app.catalog.active:          # issue 14: a keyword/alias/pin route's own model, loaded on demand too
            before = functools.partial(catalog_glue.before_route, app, ctx)
        out = await forward(ctx.rt, app.session, app.metrics, app.logs, ctx.decision, PATHS[ctx.endpoint],
                            self._body_builder(ctx, ctx.endpoint, ctx.stream), ctx.stream, ctx.allowed,
                            ctx.req_id, fallback=ctx.endpoint != "embeddings" and ctx.catalog is None, timing=ctx,
                            before=before)
        ctx.route, ctx.reason, ctx.hops = out.route, out.reason, out.hops
        return out

    async def complete(self, ctx: Ctx, out: Outcome) -> Outcome:
        """Post-processing of a finished answer, before a single byte goes to the client."""
        if out.status == 200 and isinstance(out.obj, dict):
            u = out.obj.get("usage")
            if isinstance(u, dict):
                ctx.usage = u
        if ctx.ticket is not None or "response_format" in ctx.body:
            out = await access_glue.finish_nonstream(self, ctx, out)   # structured outputs; ledger commit
        return out

    async def respond(self, ctx: Ctx, out: Outcome, send) -> None:
        if ctx.committed and out.resp is None:      # a loading notice went out: the engine's refusal as an event
            ctx.status = out.status
            ctx.stop_clock()
            await notice.send_error_event(send, notice.error_body(out.status, out.body))
        elif out.resp is None:
            await send_nonstream(ctx, out, send)
        else:
            await send_stream(self.app, ctx, out, send)

    async def refuse(self, ctx: Ctx, err: ApiError, send) -> None:
        """An error answer, with the routing headers of how far the request got."""
        if getattr(err, "route", None):      # a 503 at the end of a chain names the route it ended on
            ctx.route, ctx.reason, ctx.hops = err.route, err.reason, err.hops
        if err.status == 503:
            err.headers.setdefault("Retry-After", "1")
            err.headers.setdefault("x-should-retry", "false")
        ctx.status = err.status
        ctx.error_code = err.code
        self.app.metrics.rejected.inc((str(err.status), err.code or ""))
        ctx.stop_clock()
        if ctx.committed:        # the stream's head went out with a loading notice: the error ends the stream
            await notice.send_error_event(send, orjson.dumps(err.body()))
            return
        try:
            await send_error(send, err, route_headers(ctx))
        except OSError:
            pass

    # ================================================================================= the upstream body
    def _body_builder(self, ctx: Ctx, endpoint: str, stream: bool):
        """The body sent to each route tried: the client's, with the route's model id. stream_options are added
        only when the route says its engine honours them and the client did not ask for usage itself."""
        body = ctx.body
        orig = body.get("stream_options")
        has_orig = "stream_options" in body
        if stream:
            ctx.client_usage = isinstance(orig, dict) and orig.get("include_usage") is True

        def build(st) -> bytes:
            r = st.cfg
            if ctx.catalog is not None:
                body["model"] = ctx.catalog.model
            elif endpoint == "embeddings":
                body["model"] = r.embeddings_model or r.model
            else:
                body["model"] = r.model
                if stream and not ctx.client_usage:
                    ctx.usage_added = r.stream_usage
                    if r.stream_usage:
                        body["stream_options"] = {**orig, "include_usage": True} if isinstance(orig, dict) \
                            else {"include_usage": True}
                    elif has_orig:
                        body["stream_options"] = orig       # as the client wrote it (a failover may come here)
                    else:
                        body.pop("stream_options", None)
            return orjson.dumps(body)
        return build
