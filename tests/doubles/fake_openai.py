"""TEST DOUBLE - a fake OpenAI Chat Completions API on 127.0.0.1 (OpenAI itself, or any OpenAI-compatible provider
such as Together or OpenRouter). Never a real provider; no test reaches one.

It follows the documented wire format and refuses what the real API refuses:
  * `Authorization: Bearer <key>` or 401 {"error": {"code": "invalid_api_key", ...}}
    - https://platform.openai.com/docs/api-reference/authentication
  * POST /v1/chat/completions: model and a non-empty messages list are required (400 otherwise); the answer is a
    `chat.completion` object with choices[].message (content, tool_calls) and usage
    - https://platform.openai.com/docs/api-reference/chat/create , .../chat/object
  * stream: true -> `data: {chat.completion.chunk}` events, a usage chunk with "choices": [] only when
    stream_options.include_usage is true, then `data: [DONE]` - https://platform.openai.com/docs/api-reference/chat-streaming
  * errors {"error": {"message", "type", "param", "code"}}; 429 with Retry-After - https://platform.openai.com/docs/guides/error-codes
"""
from __future__ import annotations

import json
import time

from aiohttp import web

from fake_cloud_base import FakeProvider


def error_body(status: int, kind: str = "", message: str = "") -> dict:
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status, kind or "server_error")
    etype = "invalid_request_error" if status < 429 else ("requests" if status == 429 else "server_error")
    return {"error": {"message": message or f"fake openai error {status}", "type": etype, "param": None,
                      "code": code}}


class FakeOpenAI(FakeProvider):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        self.count = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.headers_seen.append({k.lower(): v for k, v in request.headers.items()})
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response(error_body(401, message="Incorrect API key provided"), status=401)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(error_body(400, "invalid_json", "We could not parse the JSON body"), status=400)
        self.requests.append(body)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return web.json_response(error_body(400, "missing_required_parameter", "model is required"), status=400)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return web.json_response(error_body(400, "invalid_value", "messages must be a non-empty array"),
                                     status=400)
        fault = await self.fault(error_body)
        if fault is not None:
            return fault
        self.count += 1
        last = body["messages"][-1]
        text = last.get("content") if isinstance(last.get("content"), str) else ""
        msg: dict = {"role": "assistant", "content": f"Hello from {body['model']}"}
        finish = "stop"
        if body.get("tools") and "weather" in text.lower():
            msg = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_fake{self.count:04d}", "type": "function",
                "function": {"name": body["tools"][0]["function"]["name"], "arguments": '{"city":"Paris"}'}}]}
            finish = "tool_calls"
        pt = len(json.dumps(body["messages"])) // 4 + 1
        usage = {"prompt_tokens": pt, "completion_tokens": 5, "total_tokens": pt + 5}
        base = {"id": f"chatcmpl-fake{self.count:04d}", "created": int(time.time()), "model": body["model"]}
        if body.get("stream") is not True:
            return web.json_response({**base, "object": "chat.completion", "usage": usage,
                                      "choices": [{"index": 0, "message": msg, "finish_reason": finish}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def data(obj) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        chunk = {**base, "object": "chat.completion.chunk"}
        await data({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}]})
        if msg.get("content"):
            for w in msg["content"].split(" "):
                await data({**chunk, "choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}]})
        await data({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        so = body.get("stream_options")
        if isinstance(so, dict) and so.get("include_usage") is True:
            await data({**chunk, "choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
