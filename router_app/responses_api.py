"""POST /v1/responses: the OpenAI Responses API, served by translation to chat completions.

Not a second pipeline: `serve()` authenticates on headers, reads and translates the body
(router_app/responses_translate.py), then hands the chat body to the router's own /v1/chat/completions step
(`RouterApp._proxy(..., "chat")`: auth, decide, budgets, dispatch, structured outputs, ledger, decision log) through
a wrapped receive/send pair. On the way out a 200 chat.completion becomes a Response object and a chat SSE stream
becomes Responses SSE events (router_app/responses_stream.py); error answers are already OpenAI-shaped and pass
through unchanged, with the routing headers.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import orjson

from .access_protocol import ApiError
from .responses_stream import ResponsesStream
from .responses_translate import from_chat, to_chat

JSON = b"application/json"


def _header(scope, name: bytes):
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


async def _refuse(app, scope, send, err: ApiError, t0: float) -> None:
    """An error before the chat step (auth, JSON, translation): counted, with the usual /v1 headers."""
    rid = (_header(scope, b"x-request-id") or "")[:64] or f"{app._id_prefix}-{next(app._ids)}"
    ctx = SimpleNamespace(route="none", bucket="none", reason="none", req_id=rid,
                          overhead_ms=(time.perf_counter() - t0) * 1000)
    app.metrics.rejected.inc((str(err.status), err.code or ""))
    await app._send_error(send, err, app._route_headers(ctx))


async def serve(app, scope, receive, send) -> None:
    t0 = time.perf_counter()
    try:
        client = scope.get("client")
        app.access.authenticate(_header(scope, b"authorization"), client[0] if client else "")  # before the body
        raw = await app._read_body(scope, receive, app.runtime.config.max_body_bytes)
        try:
            req = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(req, dict):
            raise ApiError(400, "request body must be a JSON object", code="invalid_request")
        chat_body = orjson.dumps(to_chat(req))
    except ApiError as err:
        return await _refuse(app, scope, send, err, t0)

    sent = [False]

    async def receive2():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": chat_body, "more_body": False}
        return await receive()

    state = {"mode": None, "start": None, "buf": []}
    stream = ResponsesStream(req)

    async def send2(msg):
        if msg["type"] == "http.response.start":
            ctype = next((v for k, v in msg.get("headers", []) if k == b"content-type"), b"")
            if msg["status"] != 200:
                state["mode"] = "pass"
                return await send(msg)
            if ctype.startswith(b"text/event-stream"):
                state["mode"] = "sse"
                await send(msg)
                return await send({"type": "http.response.body", "body": stream.start(), "more_body": True})
            state["mode"], state["start"] = "json", msg
            return None
        if msg["type"] != "http.response.body" or state["mode"] == "pass":
            return await send(msg)
        more = msg.get("more_body", False)
        if state["mode"] == "sse":
            data = stream.feed(msg.get("body", b""))
            if not more:
                data += stream.close()
            if data or not more:
                await send({"type": "http.response.body", "body": data, "more_body": more})
            return None
        state["buf"].append(msg.get("body", b""))
        if more:
            return None
        body = b"".join(state["buf"])
        try:
            out = orjson.dumps(from_chat(orjson.loads(body), req))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            out = body     # not a chat.completion: pass it on as it came
        start = state["start"]
        hdrs = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        hdrs.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": hdrs})
        await send({"type": "http.response.body", "body": out, "more_body": False})

    scope2 = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"content-length"])
    await app._proxy(scope2, receive2, send2, "chat")
