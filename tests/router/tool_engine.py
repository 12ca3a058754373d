"""A loopback engine that also speaks tool calls (issue 11 tests): with `tools` in the body and no tool result yet
it answers a call to the first tool; after a `tool` message it answers with text quoting the tool's output;
`content` (when set) is its plain non-stream text answer. Everything else is the core test engine's."""
from __future__ import annotations

import json
import time

from aiohttp import web

from engine import Engine

CALL_ARGS = '{"city": "Paris"}'


class ToolEngine(Engine):
    def __init__(self, *a, **kw):
        self.content = None
        super().__init__(*a, **kw)

    def reset(self):
        super().reset()
        self.content = None

    async def _answer(self, request, chat: bool):
        if not chat or self.mode != "ok":
            return await super()._answer(request, chat)
        body = await request.json()
        msgs = body.get("messages") or []
        last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
        call = text = None
        if body.get("tools") and last.get("role") != "tool":
            call = {"id": "call_1", "type": "function",
                    "function": {"name": body["tools"][0]["function"]["name"], "arguments": CALL_ARGS}}
        elif last.get("role") == "tool":
            text = f"{self.name}: the tool said {last.get('content')}"
        elif self.content is not None and not body.get("stream"):
            text = self.content
        if call is None and text is None:
            return await super()._answer(request, chat)
        self.requests.append(body)
        usage = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
        if body.get("stream"):
            return await self._stream_special(request, body, call, text, usage)
        msg = {"role": "assistant", "content": text}
        if call:
            msg["tool_calls"] = [call]
        return web.json_response({
            "id": "t-1", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if call else "stop"}],
            "usage": usage})

    async def _stream_special(self, request, body, call, text, usage):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def ev(delta, finish=None, **extra):
            obj = {"id": "t-s", "object": "chat.completion.chunk", "model": body.get("model"),
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        await ev({"role": "assistant", "content": None if call else ""})
        if call:
            fn = call["function"]
            await ev({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                      "function": {"name": fn["name"], "arguments": ""}}]})
            for piece in (fn["arguments"][:8], fn["arguments"][8:]):
                await ev({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        else:
            await ev({"content": text})
        await ev({}, "tool_calls" if call else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            obj = {"id": "t-s", "object": "chat.completion.chunk", "model": body.get("model"), "choices": [],
                   "usage": usage}
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
