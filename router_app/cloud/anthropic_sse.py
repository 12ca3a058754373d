"""Anthropic streaming events -> OpenAI chat.completion.chunk SSE.

Anthropic (https://docs.anthropic.com/en/docs/build-with-claude/streaming): `event: <type>` + `data: {json}` for
message_start, content_block_start / content_block_delta (text_delta, input_json_delta) / content_block_stop,
message_delta (stop_reason, cumulative usage), message_stop, ping, error.
OpenAI (https://platform.openai.com/docs/api-reference/chat-streaming): `data: {chunk}` lines, a usage chunk with
`"choices": []` when asked for, and `data: [DONE]`.

`AnthropicStream` wraps the provider's aiohttp response and offers what the relay reads (`content.readany()`,
`content.iter_any()`, `content.at_eof()`, `release()`, `close()`, `status`, `headers`), so a translated stream
travels through the same code (first-byte checks, deadlines, usage accounting) as a local engine's.
The usage chunk is always emitted; the relay drops it when the client did not ask for it (stream_usage).
"""
from __future__ import annotations

import time
from typing import Optional

import orjson

from .anthropic_req import FINISH
from .anthropic_resp import ERROR_TYPES, usage_of


class Translator:
    """Feeds raw Anthropic SSE bytes, returns OpenAI SSE bytes (complete events only)."""

    def __init__(self):
        self.buf = b""
        self.id = "chatcmpl-anthropic"
        self.model = ""
        self.created = int(time.time())
        self.usage: dict = {}
        self.tools: dict[int, int] = {}     # Anthropic block index -> OpenAI tool_calls index
        self.done = False

    def _chunk(self, delta: dict, finish: Optional[str] = None) -> bytes:
        obj = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def feed(self, data: bytes) -> bytes:
        self.buf = (self.buf + data).replace(b"\r\n", b"\n")    # a CR and its LF may come in two reads
        out = []
        while b"\n\n" in self.buf:
            ev, self.buf = self.buf.split(b"\n\n", 1)
            out.append(self._event(ev))
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self.buf = self.buf, b""
        return self._event(rest) if rest.strip() else b""

    def _event(self, ev: bytes) -> bytes:
        payload = b"".join(line[5:].strip() for line in ev.split(b"\n") if line.startswith(b"data:"))
        if not payload:
            return b""
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b""
        t = obj.get("type") if isinstance(obj, dict) else None
        fn = getattr(self, "_on_" + str(t), None)
        return fn(obj) if fn else b""          # ping and unknown (future) events: nothing

    def _on_message_start(self, obj: dict) -> bytes:
        m = obj.get("message") or {}
        self.id = "chatcmpl-" + str(m.get("id") or "anthropic")
        self.model = m.get("model") or ""
        self.usage.update(m.get("usage") or {})
        return self._chunk({"role": "assistant", "content": ""})

    def _on_content_block_start(self, obj: dict) -> bytes:
        b = obj.get("content_block") or {}
        if b.get("type") == "tool_use":
            k = len(self.tools)
            self.tools[obj.get("index", 0)] = k
            return self._chunk({"tool_calls": [{"index": k, "id": b.get("id") or "", "type": "function",
                                                "function": {"name": b.get("name") or "", "arguments": ""}}]})
        if b.get("type") == "text" and b.get("text"):
            return self._chunk({"content": b["text"]})
        return b""

    def _on_content_block_delta(self, obj: dict) -> bytes:
        d = obj.get("delta") or {}
        if d.get("type") == "text_delta":
            return self._chunk({"content": d.get("text", "")})
        if d.get("type") == "input_json_delta":
            k = self.tools.get(obj.get("index", 0), 0)
            return self._chunk({"tool_calls": [{"index": k, "function": {"arguments": d.get("partial_json", "")}}]})
        return b""              # thinking / signature deltas stay with the provider

    def _on_message_delta(self, obj: dict) -> bytes:
        self.usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
        reason = (obj.get("delta") or {}).get("stop_reason")
        return self._chunk({}, FINISH.get(reason or "end_turn", "stop"))

    def _on_message_stop(self, obj: dict) -> bytes:
        self.done = True
        usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [], "usage": usage_of(self.usage)}
        return b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"

    def _on_error(self, obj: dict) -> bytes:
        e = obj.get("error") or {}
        etype = str(e.get("type") or "api_error")
        err = {"error": {"message": "anthropic: " + str(e.get("message") or "stream error"),
                         "type": ERROR_TYPES.get(etype, "server_error"), "param": None, "code": etype}}
        return b"data: " + orjson.dumps(err) + b"\n\n"


class _Content:
    def __init__(self, outer: "AnthropicStream"):
        self._o = outer

    async def readany(self) -> bytes:
        o = self._o
        while True:
            raw = await o.inner.content.readany()
            if not raw:
                return o.tr.flush()
            out = o.tr.feed(raw)
            if out:
                return out

    async def iter_any(self):
        while True:
            chunk = await self.readany()
            if not chunk:
                return
            yield chunk

    def at_eof(self) -> bool:
        return self._o.inner.content.at_eof()


class AnthropicStream:
    """An aiohttp response look-alike whose body is the translated stream."""

    def __init__(self, inner):
        self.inner = inner
        self.tr = Translator()
        self.content = _Content(self)
        self.status = inner.status
        self.headers = inner.headers

    def release(self) -> None:
        self.inner.release()

    def close(self) -> None:
        self.inner.close()
