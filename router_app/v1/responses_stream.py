"""Chat-completions SSE stream -> Responses API SSE events (incremental, one chunk in, bytes out).

Events, in the documented order: response.created, response.in_progress; per output item
response.output_item.added, then for a message response.content_part.added, response.output_text.delta...,
response.output_text.done, response.content_part.done, or for a tool call response.function_call_arguments.delta...,
response.function_call_arguments.done; response.output_item.done; last response.completed (or
response.incomplete when the engine stopped at max tokens). A router error event mid-stream becomes an `error`
event followed by response.failed. Every event carries a sequence_number. No `[DONE]` sentinel (not part of
this API).
"""
from __future__ import annotations

import time
from typing import Optional

import orjson

from . import responses_translate as T


class ResponsesStream:
    def __init__(self, req: dict):
        self.req = req
        self.resp_id = T.new_id("resp")
        self.created = int(time.time())
        self.model = req.get("model")
        self.seq = 0
        self.buf = b""
        self.items: list = []          # output items in output_index order: dicts with our own bookkeeping
        self.text_item: Optional[dict] = None
        self.calls: dict = {}          # chat tool_call index -> item
        self.usage: Optional[dict] = None
        self.finish: Optional[str] = None
        self.done = False

    # ------------------------------------------------------------------ output
    def _ev(self, typ: str, **fields) -> bytes:
        fields["type"] = typ
        fields["sequence_number"] = self.seq
        self.seq += 1
        return b"event: " + typ.encode() + b"\ndata: " + orjson.dumps(fields) + b"\n\n"

    def _response(self, status: str, with_output: bool = True) -> dict:
        out = [self._public(it) for it in self.items] if with_output else []
        return T.envelope(self.req, self.resp_id, self.created, self.model, status, out,
                          self.usage, self.finish if status != "in_progress" else None)

    @staticmethod
    def _public(it: dict) -> dict:
        if it["type"] == "message":
            return T.message_item(it["text"], it["id"], it["status"])
        return T.call_item(it["call_id"], it["name"], it["arguments"], it["id"], it["status"])

    def start(self) -> bytes:
        r = self._response("in_progress", False)
        return self._ev("response.created", response=r) + self._ev("response.in_progress", response=r)

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while True:
            cut = self._boundary()
            if cut is None:
                break
            block, self.buf = self.buf[:cut[0]], self.buf[cut[1]:]
            out.append(self._block(block))
        return b"".join(out)

    def _boundary(self):
        best = None
        for sep in (b"\n\n", b"\r\n\r\n"):
            i = self.buf.find(sep)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, i + len(sep))
        return best

    def _block(self, block: bytes) -> bytes:
        data = b"".join(ln[5:].lstrip() for ln in block.splitlines() if ln.startswith(b"data:"))
        if not data or self.done:
            return b""
        if data == b"[DONE]":
            return self.finish_stream()
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(obj, dict):
            return b""
        if isinstance(obj.get("error"), dict):
            return self.fail(obj["error"])
        if obj.get("model"):
            self.model = obj["model"]
        if isinstance(obj.get("usage"), dict):
            self.usage = T.usage_of(obj["usage"])
        out = []
        for ch in obj.get("choices") or []:
            if not isinstance(ch, dict) or ch.get("index", 0) != 0:
                continue
            delta = ch.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(self._text(delta["content"]))
            for tc in delta.get("tool_calls") or []:
                if isinstance(tc, dict):
                    out.append(self._call(tc))
            if ch.get("finish_reason"):
                self.finish = ch["finish_reason"]
        return b"".join(out)

    def _add(self, it: dict) -> bytes:
        it["index"] = len(self.items)
        self.items.append(it)
        return self._ev("response.output_item.added", output_index=it["index"], item=self._public(it))

    def _text(self, s: str) -> bytes:
        out = b""
        it = self.text_item
        if it is None:
            it = self.text_item = {"type": "message", "id": T.new_id("msg"), "text": "", "status": "in_progress"}
            out += self._add(it)
            out += self._ev("response.content_part.added", item_id=it["id"], output_index=it["index"],
                            content_index=0, part={"type": "output_text", "text": "", "annotations": []})
        it["text"] += s
        return out + self._ev("response.output_text.delta", item_id=it["id"], output_index=it["index"],
                              content_index=0, delta=s, logprobs=[])

    def _call(self, tc: dict) -> bytes:
        out = b""
        idx = tc.get("index", 0)
        fn = tc.get("function") or {}
        it = self.calls.get(idx)
        if it is None:
            it = self.calls[idx] = {"type": "function_call", "id": T.new_id("fc"),
                                    "call_id": tc.get("id") or T.new_id("call"), "name": fn.get("name") or "",
                                    "arguments": "", "status": "in_progress"}
            out += self._add(it)
        elif fn.get("name"):
            it["name"] += fn["name"]
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            it["arguments"] += args
            out += self._ev("response.function_call_arguments.delta", item_id=it["id"],
                            output_index=it["index"], delta=args)
        return out

    # ------------------------------------------------------------------ end
    def finish_stream(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        out = []
        status = "incomplete" if self.finish == "length" else "completed"
        for it in self.items:
            it["status"] = status
            if it["type"] == "message":
                out.append(self._ev("response.output_text.done", item_id=it["id"], output_index=it["index"],
                                    content_index=0, text=it["text"], logprobs=[]))
                out.append(self._ev("response.content_part.done", item_id=it["id"], output_index=it["index"],
                                    content_index=0, part={"type": "output_text", "text": it["text"],
                                                           "annotations": []}))
            else:
                out.append(self._ev("response.function_call_arguments.done", item_id=it["id"],
                                    output_index=it["index"], name=it["name"], arguments=it["arguments"]))
            out.append(self._ev("response.output_item.done", output_index=it["index"], item=self._public(it)))
        out.append(self._ev("response." + status, response=self._response(status)))
        return b"".join(out)

    def fail(self, err: dict) -> bytes:
        self.done = True
        r = self._response("failed")
        r["error"] = {"code": err.get("code") or "server_error", "message": err.get("message") or "stream failed"}
        return (self._ev("error", code=err.get("code"), message=err.get("message"), param=err.get("param"))
                + self._ev("response.failed", response=r))

    def close(self) -> bytes:
        """The chat stream ended: flush what is buffered; end the response if [DONE] never came."""
        out = self.feed(b"\n\n") if self.buf.strip() else b""
        return out + self.finish_stream()
