"""TEST DOUBLE - a fake Anthropic Messages API on 127.0.0.1. Never a real provider; no test reaches one.

It follows the documented wire format and refuses what the real API refuses:
  * POST /v1/messages, headers `x-api-key` (401 authentication_error otherwise) and `anthropic-version`
    (400 without it) - https://docs.anthropic.com/en/api/overview , https://docs.anthropic.com/en/api/versioning
    (the official Python SDK 2.x sends the key as `Authorization: Bearer`; the fake takes that too, and the
    tests check that the router sends `x-api-key` as documented)
  * body: model, max_tokens (required), messages (user/assistant turns, the first a user turn; no "system" role:
    the system prompt is the top-level `system`), content blocks text / image (base64 source with a supported
    media_type, or url source) / tool_use / tool_result (its tool_use_id names an earlier tool_use), tools with
    name + input_schema, tool_choice; unknown top-level fields are refused - https://docs.anthropic.com/en/api/messages
  * answer: a `message` object with content blocks, stop_reason (end_turn | tool_use | max_tokens) and
    usage {input_tokens, output_tokens, cache_*} - same page
  * stream: true -> SSE `event:`/`data:` pairs message_start, ping, content_block_start, content_block_delta
    (text_delta / input_json_delta), content_block_stop, message_delta (stop_reason, usage.output_tokens),
    message_stop - https://docs.anthropic.com/en/docs/build-with-claude/streaming
  * errors: {"type": "error", "error": {"type", "message"}}; 429 rate_limit_error with Retry-After,
    529 overloaded_error - https://docs.anthropic.com/en/api/errors , https://docs.anthropic.com/en/api/rate-limits
Behaviour: with tools and a last user turn asking about the "weather", it calls the first tool; otherwise it
answers "Hello from <model>" (and counts the images it saw).
"""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from fake_cloud_base import FakeProvider

TOP_LEVEL = {"model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k", "stop_sequences",
             "metadata", "tools", "tool_choice", "thinking", "service_tier"}
MEDIA = {"image/jpeg", "image/png", "image/gif", "image/webp"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


class BadRequest(Exception):
    pass


def error_body(status: int, _kind: str = "", message: str = "") -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                       "message": message or f"fake anthropic error {status}"}}


def _check_block(b, role: str, tool_ids: set) -> int:
    """Validates one content block; returns 1 for an image."""
    if not isinstance(b, dict) or "type" not in b:
        raise BadRequest("messages: content blocks are objects with a type")
    t = b["type"]
    if t == "text":
        if not isinstance(b.get("text"), str):
            raise BadRequest("messages: text blocks need text")
    elif t == "image":
        if role != "user":
            raise BadRequest("messages: images are user content")
        src = b.get("source") or {}
        if src.get("type") == "base64":
            if src.get("media_type") not in MEDIA or not src.get("data"):
                raise BadRequest("messages: image.source.media_type must be one of " + ", ".join(sorted(MEDIA)))
        elif src.get("type") != "url" or not src.get("url"):
            raise BadRequest("messages: image.source must be base64 or url")
        return 1
    elif t == "tool_use":
        if role != "assistant" or not b.get("id") or not b.get("name") or not isinstance(b.get("input"), dict):
            raise BadRequest("messages: tool_use blocks are assistant content with id, name and an input object")
        tool_ids.add(b["id"])
    elif t == "tool_result":
        if role != "user" or b.get("tool_use_id") not in tool_ids:
            raise BadRequest("messages: tool_result blocks must name the id of an earlier tool_use block")
    else:
        raise BadRequest(f"messages: unknown content block type '{t}'")
    return 0


def validate(body) -> int:
    """Refuses what the real API refuses (the parts the router produces); returns the number of images."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    extra = set(body) - TOP_LEVEL
    if extra:
        raise BadRequest(f"{sorted(extra)[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise BadRequest("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise BadRequest("max_tokens: Field required (a positive integer)")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: at least one message is required")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Unexpected role; the system prompt is the top-level "
                             "system parameter")
    if msgs[0].get("role") != "user":
        raise BadRequest("messages: first message must use the \"user\" role")
    images, tool_ids = 0, set()
    for i, m in enumerate(msgs):
        role = m.get("role")
        content = m.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise BadRequest(f"messages.{i}.content: a string or a list of blocks")
        for b in content:
            images += _check_block(b, role, tool_ids)
    for t in body.get("tools") or ():
        if not t.get("name") or not isinstance(t.get("input_schema"), dict):
            raise BadRequest("tools: each tool needs a name and an input_schema")
    return images


def _last_user_text(msgs: list) -> tuple[str, bool]:
    m = msgs[-1]
    c = m.get("content")
    if isinstance(c, str):
        return c, False
    text = " ".join(b.get("text", "") for b in c if b.get("type") == "text")
    return text, any(b.get("type") == "tool_result" for b in c)


class FakeAnthropic(FakeProvider):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        self.stream_error = False     # true: an `error` event after the first text delta
        self.count = 0

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.headers_seen.append({k.lower(): v for k, v in request.headers.items()})
        if request.headers.get("x-api-key") != self.key and request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response(error_body(401, message="invalid x-api-key"), status=401)
        if not request.headers.get("anthropic-version"):
            return web.json_response(error_body(400, message="anthropic-version: header is required"), status=400)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(error_body(400, message="the body is not JSON"), status=400)
        self.requests.append(body)
        try:
            images = validate(body)
        except BadRequest as exc:
            return web.json_response(error_body(400, message=str(exc)), status=400)
        fault = await self.fault(error_body)
        if fault is not None:
            return fault
        self.count += 1
        text, after_tool = _last_user_text(body["messages"])
        prompt_chars = len(json.dumps(body["messages"])) + len(body.get("system") or "")
        usage = {"input_tokens": prompt_chars // 4 + 1, "output_tokens": 0, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        blocks: list = []
        stop = "end_turn"
        if body.get("tools") and "weather" in text.lower() and not after_tool:
            tool = body["tools"][0]["name"]
            blocks = [{"type": "text", "text": "Let me check."},
                      {"type": "tool_use", "id": f"toolu_fake{self.count:04d}", "name": tool,
                       "input": {"city": "Paris", "unit": "celsius"}}]
            stop = "tool_use"
        else:
            answer = f"Hello from {body['model']}" + (f" (I see {images} image(s))" if images else "")
            blocks = [{"type": "text", "text": answer}]
        usage["output_tokens"] = sum(len(json.dumps(b)) for b in blocks) // 4 + 1
        msg = {"id": f"msg_fake{self.count:04d}", "type": "message", "role": "assistant", "model": body["model"],
               "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if body.get("stream") is True:
            return await self._stream(request, msg)
        return web.json_response(msg)

    async def _stream(self, request: web.Request, msg: dict) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def ev(kind: str, data: dict) -> None:
            await resp.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
            await asyncio.sleep(0)

        start = {**msg, "content": [], "stop_reason": None,
                 "usage": {**msg["usage"], "output_tokens": 1}}
        await ev("message_start", {"type": "message_start", "message": start})
        await ev("ping", {"type": "ping"})
        for i, b in enumerate(msg["content"]):
            if b["type"] == "text":
                await ev("content_block_start", {"type": "content_block_start", "index": i,
                                                 "content_block": {"type": "text", "text": ""}})
                words = b["text"].split(" ")
                for j, w in enumerate(words):
                    piece = w if j == 0 else " " + w
                    await ev("content_block_delta", {"type": "content_block_delta", "index": i,
                                                     "delta": {"type": "text_delta", "text": piece}})
                    if self.stream_error:
                        await ev("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})
                        await resp.write_eof()
                        return resp
            else:
                await ev("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
                js = json.dumps(b["input"])
                for piece in (js[:len(js) // 2], js[len(js) // 2:]):
                    await ev("content_block_delta", {"type": "content_block_delta", "index": i,
                                                     "delta": {"type": "input_json_delta", "partial_json": piece}})
            await ev("content_block_stop", {"type": "content_block_stop", "index": i})
        await ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                                   "usage": {"output_tokens": msg["usage"]["output_tokens"]}})
        await ev("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp
