"""Server-sent events passthrough: forwards whole events as they arrive and picks out the usage chunk.

When the router asked the engine for `stream_options.include_usage` on the client's behalf, the usage-only chunk
(`"choices": []` plus `"usage"`) is read for accounting and dropped, so the client sees exactly what it asked for.
"""
from __future__ import annotations

from typing import Optional

import orjson


class SSEFilter:
    __slots__ = ("buf", "usage", "strip_usage")

    def __init__(self, strip_usage: bool):
        self.buf = b""
        self.usage: Optional[dict] = None
        self.strip_usage = strip_usage

    @staticmethod
    def _last_boundary(data: bytes) -> int:
        """End index (exclusive) of the last complete event in data, or -1."""
        i = data.rfind(b"\n\n")
        end = i + 2 if i >= 0 else -1
        j = data.rfind(b"\r\n\r\n")
        if j >= 0 and j + 4 > end:
            end = j + 4
        return end

    def feed(self, chunk: bytes) -> bytes:
        data = self.buf + chunk if self.buf else chunk
        end = self._last_boundary(data)
        if end < 0:
            self.buf = data
            return b""
        complete, self.buf = data[:end], data[end:]
        if b'"usage"' not in complete:
            return complete
        return self._process(complete)

    def _process(self, complete: bytes) -> bytes:
        sep = b"\r\n\r\n" if b"\r\n\r\n" in complete else b"\n\n"
        events = complete.split(sep)
        out = []
        for ev in events:
            if not ev:
                continue
            if b'"usage"' in ev:
                keep = self._inspect(ev)
                if not keep:
                    continue
            out.append(ev)
        if not out:
            return b""
        return sep.join(out) + sep

    def _inspect(self, ev: bytes) -> bool:
        payload = b""
        for line in ev.splitlines():
            if line.startswith(b"data:"):
                payload += line[5:].strip()
        if not payload or payload == b"[DONE]":
            return True
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(obj, dict):
            return True
        u = obj.get("usage")
        if isinstance(u, dict):
            self.usage = u
            if self.strip_usage and not obj.get("choices"):
                return False
        return True

    def flush(self) -> bytes:
        rest, self.buf = self.buf, b""
        if rest and b'"usage"' in rest:
            return self._process(rest + b"\n\n")
        return rest
