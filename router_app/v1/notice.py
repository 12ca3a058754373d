"""The loading notice (issue 14): a streamed request that has to wait for a model load gets its answer's head (200,
text/event-stream, the routing headers) and an SSE comment line at once, before the first token:

    : loading <model> on <route>

SSE comment lines (a line that starts with ':') are ignored by EventSource and by the OpenAI SDKs' stream parsers, so
clients that do not know about it see an ordinary stream. From that moment the answer is committed: an error that
comes later (the load fails or times out, no route can take the request, the engine refuses it) is sent as an SSE
`data: {"error": ...}` event that ends the stream, the same shape a stream that breaks mid-way ends with (the OpenAI
SDKs raise it as an APIError). `catalog.stream_loading_notice: false` turns the notice off (the answer then starts
only once the model is loaded, and every error keeps its own status code).
"""
from __future__ import annotations

import orjson

from .ctx import Ctx, route_headers

SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def arm(app, ctx: Ctx, send) -> None:
    """Gives `ctx` its notice callback (called by router_app/catalog/glue.py before a request waits for a load)."""
    if not app.runtime.config.catalog.stream_loading_notice:
        return

    async def notice(model: str, route: str) -> None:
        if not ctx.stream:
            return
        line = b": loading " + _safe(model) + b" on " + _safe(route) + b"\n\n"
        if not ctx.committed:
            ctx.stop_clock()
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + route_headers(ctx)})
            ctx.committed = True
        await send({"type": "http.response.body", "body": line, "more_body": True})

    ctx.notice = notice


def _safe(s: str) -> bytes:
    """One line of the comment: no CR/LF can end it early."""
    return s.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


async def send_error_event(send, error_body: bytes) -> None:
    """Ends a committed stream with an OpenAI-shaped error event (`error_body`: the JSON {"error": {...}})."""
    try:
        await send({"type": "http.response.body", "body": b"data: " + error_body + b"\n\n", "more_body": False})
    except OSError:
        pass


def error_body(status: int, body: bytes) -> bytes:
    """An engine's non-stream answer turned into the error event's payload (kept as is when it already is one)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        return orjson.dumps(obj)
    text = body[:500].decode("utf-8", "replace")
    return orjson.dumps({"error": {"message": f"engine answered {status}: {text}", "type": "server_error",
                                   "param": None, "code": "upstream_error"}})
