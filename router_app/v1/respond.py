"""Sending the answer: a finished non-stream answer at once, or a stream relayed event by event.

A stream has passed its first bytes to the client, so nothing is retried from here: an engine that breaks, goes
silent past its idle timeout, or runs past the route's total deadline ends the stream with an SSE `error` event.
The usage chunk the router asked for on the client's behalf is read for accounting and dropped."""
from __future__ import annotations

import asyncio

import aiohttp
import orjson

from ..access import glue as access_glue
from ..dispatch.forward import Outcome
from ..dispatch.sse import SSEFilter
from ..dispatch.upstreams import mark_route_down
from ..ops.telemetry import now_iso
from .ctx import Ctx, route_headers
from .errors import send_bytes

MESSAGES = {
    "stream_broken": "upstream stream broke (stream_broken); nothing is retried after the first byte",
    "timeout": "upstream went silent past its read timeout (timeout); nothing is retried after the first byte",
    "deadline": "upstream ran past the route's total deadline (total_timeout_s); the stream was cut",
}


async def send_nonstream(ctx: Ctx, out: Outcome, send) -> None:
    ctx.status = out.status
    ctx.stop_clock()
    hdrs = route_headers(ctx)
    hdrs.extend(out.extra_headers)
    await send_bytes(send, out.status, out.body, out.content_type, hdrs)


async def send_stream(app, ctx: Ctx, out: Outcome, send) -> None:
    ctx.status = 200
    ctx.stop_clock()
    filt = SSEFilter(strip_usage=ctx.usage_added)
    hdrs = [(b"content-type", out.content_type), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
    hdrs.extend(route_headers(ctx))
    resp = out.resp
    access = app.access
    try:
        if not ctx.committed:     # a loading notice (router_app/v1/notice.py) may have sent the head already
            await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        first = filt.feed(out.first_chunk or b"")
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        async with asyncio.timeout_at(out.deadline):
            async for chunk in resp.content.iter_any():
                data = filt.feed(chunk)
                if data:
                    if filt.usage is not None and ctx.ticket is not None:   # commit before the last events go out
                        await access_glue.settle_stream(access, ctx, filt.usage)
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        tail = filt.flush()
        if filt.usage is not None and ctx.ticket is not None:
            await access_glue.settle_stream(access, ctx, filt.usage)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    except (aiohttp.ClientError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError) \
                and asyncio.get_running_loop().time() >= out.deadline:
            kind = "deadline"
        else:
            kind = "timeout" if isinstance(exc, TimeoutError) else "stream_broken"
        if out.state is not None and kind != "deadline":   # a long answer is not a dead engine
            mark_route_down(out.state, f"{kind} mid-stream: {type(exc).__name__}", app.logs)
        app.metrics.upstream_failures.inc((out.route, kind))
        app.logs.failures.write({"ts": now_iso(), "id": ctx.req_id, "route": out.route, "kind": kind,
                                 "error": type(exc).__name__, "after_first_byte": True})
        ctx.status = 502
        ctx.error_code = "upstream_deadline" if kind == "deadline" else "upstream_stream_broken"
        err = orjson.dumps({"error": {"message": MESSAGES[kind], "type": "server_error", "param": None,
                                      "code": ctx.error_code}})
        try:
            await send({"type": "http.response.body", "body": b"data: " + err + b"\n\n", "more_body": False})
        except Exception:
            pass
    except OSError:
        ctx.status = 499      # the client went away while we were writing
    finally:
        ctx.usage = filt.usage
