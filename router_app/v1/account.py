"""The last step of every /v1 call, whatever happened: metrics, the decision log line, and the access ticket
settled (ledger row) and released (reservation, in-flight count); an audit line for calls that got no ticket."""
from __future__ import annotations

import time

from ..access import glue as access_glue
from ..cloud import spend as cloud_spend
from ..ops.telemetry import now_iso
from .ctx import Ctx


def account(app, ctx: Ctx, access) -> None:
    latency_ms = (time.perf_counter() - ctx.t0) * 1000
    status = ctx.status
    u = ctx.usage if isinstance(ctx.usage, dict) else None
    pt = u.get("prompt_tokens") if u else None
    ct = u.get("completion_tokens") if u else None
    m = app.metrics
    m.requests.inc((ctx.surface, ctx.route, ctx.bucket, str(status)))
    if status and status < 499 and ctx.route != "none":
        m.latency.observe((ctx.route,), latency_ms / 1000)
    m.overhead.observe((), ctx.overhead_ms)
    if pt:
        m.tokens.inc((ctx.route, "prompt"), pt)
    if ct:
        m.tokens.inc((ctx.route, "completion"), ct)
    d = ctx.decision
    rec = {
        "ts": now_iso(), "id": ctx.req_id, "endpoint": ctx.surface,
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
    if ctx.error_code:
        rec["error_code"] = ctx.error_code
    if d is not None and d.cloud:
        rec["cloud"] = d.cloud       # issue 18: which cloud routes this request could reach, and why
    if ctx.catalog is not None:     # issue 14: the placement behind a catalog decision
        p = ctx.catalog
        rec["placement"] = {"model": p.model, "choice": p.choice, "state": p.state, "evict": p.evict,
                            "candidates": [c["route"] for c in p.candidates], "rejected": p.rejected}
    app.logs.decisions.write(rec)
    if ctx.route != "none" and (status < 400 or ctx.cloud_hold):   # cloud spend / saved vs cloud (issue 18)
        cloud_spend.of(app).settle(getattr(ctx.principal, "app", None) or "-", ctx.route, u, ctx.cloud_hold)
    if ctx.ticket is not None:
        try:
            access.settle(ctx.ticket, u, route=ctx.route, bucket=ctx.bucket, status=status, latency_ms=latency_ms)
        except Exception:
            pass
        try:
            access.release(ctx.ticket)
        except Exception:
            pass
    else:
        access_glue.observe(access, ctx, u, latency_ms)   # audit line for refused / open-mode calls
