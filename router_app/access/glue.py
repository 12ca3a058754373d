"""Glue between the /v1 pipeline (router_app/v1/pipeline.py) and access control.

Kept here so the core needs only one-line calls:

* ``admit``            before dispatch: refuses a bad ``json_schema`` (400), then reserves the budget.
* ``finish_nonstream`` after the engine answered: structured-output validation and escalation, then the
                       ledger row is committed before the answer is sent.
* ``settle_stream``    when a stream's usage chunk has been seen: commit before the final chunk is sent.
* ``observe``          for calls that got no ticket (refused, or auth not enforced): the audit line.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import orjson

from . import structured as S
from ..errors import ApiError

COMMIT_WAIT_S = 5.0   # never hold an answer longer than this for the ledger


def _is_ours(access: Any) -> bool:
    return hasattr(access, "observe") and hasattr(access, "settings")


def admit(access: Any, principal: Any, d: Any, ctx: Any, body: dict) -> Any:
    if ctx.endpoint == "chat" and "response_format" in body:
        try:
            schema = S.requested_schema(body)
            if schema is not None:
                S.check_schema(schema)
        except S.SchemaInvalid as e:
            raise ApiError(400, str(e), param="response_format", code="invalid_json_schema") from None
        if schema is not None and body.get("stream") is True and _is_ours(access):
            # a stream cannot be validated before its bytes reach the client: say so in the log
            access.log_structured({"time": time.time(), "request_id": ctx.req_id, "bucket": d.bucket,
                                   "outcome": "stream_not_validated", "route": d.route, "attempts": []})
    if _is_ours(access):
        return access.admit(principal, d.route, d.est_tokens, request_id=ctx.req_id, body=body,
                            end_user=getattr(ctx, "end_user", None))
    return access.admit(principal, d.route, d.est_tokens)


async def _settle_now(access: Any, ctx: Any, usage: Optional[dict], status: int) -> None:
    if ctx.ticket is None or not _is_ours(access):
        return
    fut = access.settle(ctx.ticket, usage, route=ctx.route, bucket=ctx.bucket, status=status,
                        latency_ms=(time.perf_counter() - ctx.t0) * 1000)
    if fut is not None:
        try:
            await asyncio.wait_for(asyncio.shield(fut), COMMIT_WAIT_S)
        except asyncio.TimeoutError:
            pass


async def settle_stream(access: Any, ctx: Any, usage: Optional[dict]) -> None:
    await _settle_now(access, ctx, usage, 200)


def _access_of(app: Any, ctx: Any) -> Any:
    return app.access


def _add_usage(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    if not isinstance(b, dict):
        return a
    if not isinstance(a, dict):
        return b
    out = {}
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        try:
            out[k] = int(a.get(k) or 0) + int(b.get(k) or 0)
        except (TypeError, ValueError):
            pass
    return out


async def finish_nonstream(app: Any, ctx: Any, out: Any) -> Any:
    access = _access_of(app, ctx)
    if ctx.endpoint == "chat" and out.status == 200 and isinstance(ctx.body, dict) \
            and "response_format" in ctx.body and _is_ours(access):
        out = await _structured(app, access, ctx, out)
    await _settle_now(access, ctx, ctx.usage, out.status)
    return out


def _default_escalation(rt: Any, route: str, has_image: bool) -> Optional[str]:
    """The route the policy names, else the terminal route at the end of
    ``route``'s failover chain (None when ``route`` is itself terminal)."""
    chain = rt.policy.failover_chain(route, has_image)
    return chain[-1] if chain else None


async def _structured(app: Any, access: Any, ctx: Any, out: Any) -> Any:
    try:
        schema = S.requested_schema(ctx.body)
    except S.SchemaInvalid:
        return out
    if schema is None:
        return out
    rt = ctx.rt
    d = ctx.decision
    has_image = bool(d and d.has_image)
    cfg = access.settings.structured
    target = cfg.escalate_to or _default_escalation(rt, out.route, has_image)
    allowed = access.allowed_routes(ctx.principal)
    if target is not None and (target not in rt.states
                               or (allowed is not None and target not in allowed)
                               or (has_image and not rt.policy.vision.get(target, False))):
        target = None   # cannot go there: straight to the envelope
    try:
        first = orjson.loads(out.body)
        if not isinstance(first, dict):
            first = {}
    except orjson.JSONDecodeError:
        first = {}
    # issue 11 item 1: only the camera/safety buckets fail closed; tool calls always pass through
    if S.has_tool_calls(first) or not S.fail_closed_scope(cfg.fail_closed_buckets, d.bucket if d else None,
                                                         d.route if d else None, rt.policy):
        res = S.check_only(schema, first, source_route=out.route, log=access.log_structured,
                           request_id=ctx.req_id, bucket=ctx.bucket)
        out.extra_headers.append((b"x-homelab-structured", res.headers["x-homelab-structured"].encode()))
        return out

    extra_usage: list = []

    async def escalate(route: str):
        from ..dispatch.forward import forward
        from ..decision.policy import Decision
        dd = Decision(bucket=ctx.bucket, route=route, reason="structured_escalation", pin="route",
                      has_image=has_image, est_tokens=d.est_tokens if d else 0)
        o2 = await forward(rt, app.session, app.metrics, app.logs, dd, "/chat/completions",
                           app._body_builder(ctx, "chat", False), False, allowed, ctx.req_id, fallback=False,
                           timing=ctx)
        try:
            body = orjson.loads(o2.body) if o2.body[:1] == b"{" else None
        except orjson.JSONDecodeError:
            body = None
        finally:
            o2.close()
        if isinstance(body, dict) and isinstance(body.get("usage"), dict):
            extra_usage.append(body["usage"])
        return o2.status, body

    res = await S.enforce(schema, first, source_route=out.route, escalate_to=target, escalate=escalate,
                          envelope_template=cfg.envelope, log=access.log_structured,
                          request_id=ctx.req_id, bucket=ctx.bucket)
    for u in extra_usage:
        ctx.usage = _add_usage(ctx.usage, u)
    if extra_usage or len(getattr(res, "attempts", ()) or ()) > 1:    # an escalation was tried
        ctx.hops.append({"route": out.route, "event": "structured_escalation"})
    if res.outcome == "valid":
        out.extra_headers.append((b"x-homelab-structured", b"valid"))
        return out
    if res.outcome == "escalated_valid":
        out.route = ctx.route = res.route
        out.reason = ctx.reason = "structured_escalation"
        out.body = orjson.dumps(res.response)
        out.extra_headers.append((b"x-homelab-structured", b"escalated"))
        return out
    out.body = orjson.dumps(res.response)
    out.content_type = b"application/json"
    out.reason = ctx.reason = "structured_envelope"
    out.extra_headers.append((b"x-homelab-structured", b"envelope"))
    return out


def observe(access: Any, ctx: Any, usage: Optional[dict], latency_ms: float) -> None:
    """One audit line for a call that got no ticket."""
    if ctx.ticket is not None or not _is_ours(access):
        return
    try:
        access.observe(ctx.principal, usage, route=None if ctx.route == "none" else ctx.route,
                       bucket=None if ctx.bucket == "none" else ctx.bucket, status=ctx.status,
                       latency_ms=latency_ms, request_id=ctx.req_id,
                       code=getattr(ctx, "error_code", None), body=ctx.body)
    except Exception:
        pass
