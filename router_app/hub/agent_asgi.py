"""The agent-facing endpoints as a plain ASGI handler (like /v1, no framework per request): 200 agents at one
heartbeat per 5 s plus their long-polls are most of the hub's traffic.

POST /hub/agent/heartbeat | poll | ack | result | events, `Authorization: Bearer <node token>`, JSON body with `node`.
Errors are OpenAI-shaped, as everywhere in the router.
"""
from __future__ import annotations

import asyncio

import orjson

from ..errors import ApiError
from .service import HubError

MAX_BODY = 1 << 20
PATHS = ("heartbeat", "poll", "ack", "result", "events")


async def _send(send, status: int, body: dict) -> None:
    raw = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})


async def _read(receive) -> bytes:
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"body over {MAX_BODY} bytes", code="body_too_large")
        chunks.append(chunk)
        if not msg.get("more_body"):
            return b"".join(chunks)


async def serve(hub, scope, receive, send) -> None:
    what = scope["path"][len("/hub/agent/"):]
    try:
        if what not in PATHS:
            raise ApiError(404, f"{scope['method']} {scope['path']} is not served here", code="not_found")
        if scope["method"] != "POST":
            raise ApiError(405, f"{scope['method']} {scope['path']} is not served here", code="method_not_allowed")
        try:
            body = orjson.loads(await _read(receive) or b"{}")
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object", code="invalid_json")
        token = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v.decode("latin-1")
                token = auth[7:].strip() if auth.startswith("Bearer ") else None
        node = hub.authenticate(body.get("node"), token)
        if what == "heartbeat":
            out = hub.heartbeat(node, body)
        elif what == "poll":
            wait = body.get("wait_s", hub.settings.long_poll_s)
            if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
                raise ApiError(400, "wait_s must be a number >= 0", code="invalid_wait", param="wait_s")
            gone = asyncio.ensure_future(receive())     # completes with http.disconnect if the agent hangs up

            async def hung_up() -> bool:
                return gone.done()
            try:
                out = {"commands": await hub.poll(node, float(wait), hung_up)}
            finally:
                gone.cancel()
        elif what == "events":
            out = hub.runner_events(node, body.get("events"))
        elif what == "ack":
            out = hub.ack(node, body.get("id"))
        else:
            cmd = hub.result(node, body.get("id"), body.get("status"), body.get("result") or {})
            out = {"id": cmd["id"], "status": cmd["status"]}
    except ConnectionError:
        return
    except HubError as exc:
        typ = "authentication_error" if exc.status == 401 else "invalid_request_error"
        return await _send(send, exc.status, ApiError(exc.status, exc.message, type=typ, code=exc.code,
                                                      param=exc.param).body())
    except ApiError as err:
        return await _send(send, err.status, err.body())
    await _send(send, 200, out)
