"""POST /v1/responses: the OpenAI Responses API, served by translation to chat completions.

Not a second pipeline: the call runs the /v1 pipeline's own steps (router_app/v1/pipeline.py) as a chat call:
`begin` and `authenticate` on the headers, `read_body`, then the Responses body is translated to a chat body
(router_app/v1/responses_translate.py) and checked like any chat body (router_app/v1/body.py). `run_parsed` does
the rest (decide, budgets, dispatch, structured outputs, ledger, decision log) with a `respond` step of its own:
a 200 chat.completion becomes a Response object, a chat SSE stream becomes Responses SSE events
(router_app/v1/responses_stream.py). Error answers are already OpenAI-shaped and go out unchanged, with the routing
headers. The decision log and the request metric name the endpoint `responses`.

Usage on streams: the translated body asks for it (`stream_options.include_usage`) the way a chat client may, so
the pipeline passes the request on as such and relays the usage chunk; `response.completed` carries it, or
`usage: null` when the engine sends none.
"""
from __future__ import annotations

import orjson

from ..errors import ApiError
from . import body as B
from .account import account
from .ctx import Ctx, route_headers
from .errors import send_bytes
from .respond import send_nonstream, send_stream
from .responses_stream import ResponsesStream
from .responses_translate import from_chat, to_chat

JSON = b"application/json"


def _responder(pipeline, req: dict):
    """The pipeline's `respond` step for one Responses call (`req`: the client's Responses body)."""

    async def respond(ctx: Ctx, out, send) -> None:
        if out.resp is not None:
            return await send_stream(pipeline.app, ctx, out, _translating_send(send, ResponsesStream(req)))
        if out.status != 200:
            return await send_nonstream(ctx, out, send)
        try:
            chat = orjson.loads(out.body)        # the body as completed (structured outputs may have replaced it)
        except orjson.JSONDecodeError:
            chat = None
        if not isinstance(chat, dict):
            return await send_nonstream(ctx, out, send)    # not a chat.completion (an encoded body): as it came
        ctx.status = 200
        ctx.stop_clock()
        hdrs = route_headers(ctx)
        hdrs.extend(h for h in out.extra_headers if h[0] != b"content-encoding")
        await send_bytes(send, 200, orjson.dumps(from_chat(chat, req)), JSON, hdrs)

    return respond


def _translating_send(send, stream: ResponsesStream):
    """`send` for the relayed chat stream: its body bytes go out as Responses events."""

    async def send2(msg):
        if msg["type"] == "http.response.start":
            await send(msg)
            return await send({"type": "http.response.body", "body": stream.start(), "more_body": True})
        if msg["type"] != "http.response.body":
            return await send(msg)
        more = msg.get("more_body", False)
        data = stream.feed(msg.get("body", b""))
        if not more:
            data += stream.close()
        if data or not more:
            await send({"type": "http.response.body", "body": data, "more_body": more})

    return send2


async def serve(pipeline, scope, receive, send) -> None:
    ctx = pipeline.begin(scope, "chat")
    ctx.surface = "responses"
    try:
        pipeline.authenticate(ctx)                   # before a byte of the body is read
        raw = await pipeline.read_body(ctx, scope, receive)
        req = B.parse_json(raw)
        body = to_chat(req)
        B.check_common(body)
        B.check_chat(body)
    except ApiError as err:
        await pipeline.refuse(ctx, err, send)
        account(pipeline.app, ctx, pipeline.app.access)
        return
    await pipeline.run_parsed(ctx, body, send, receive, respond=_responder(pipeline, req))
