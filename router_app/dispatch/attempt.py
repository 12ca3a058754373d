"""One attempt against one engine: send the request, then judge the answer before a byte reaches the client.

An attempt ends in one of three ways:

* an `Outcome` the client may receive: a complete non-stream answer (a JSON object for a 2xx, or the engine's 4xx
  as it came), or a stream whose first SSE bytes have been read (the response is still open);
* `EngineFailure`: the engine failed before the first byte — refused or reset connection, a 5xx, an idle read
  timeout, a missed first-token or total deadline, or a 200 that is not what was asked for (truncated JSON, HTML,
  a non-SSE or zero-byte stream). The caller marks the route down and fails over;
* any other exception (cancellation when the client left): the response is closed and the exception propagates.
"""
from __future__ import annotations

import asyncio
from typing import Optional

import aiohttp
import orjson

from ..cloud.providers import retry_after_s

SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


class EngineFailure(Exception):
    def __init__(self, kind: str, detail: dict):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class Outcome:
    __slots__ = ("status", "content_type", "body", "obj", "first_chunk", "resp", "state", "route", "reason", "hops",
                 "upstream_s", "queue_s", "extra_headers", "deadline")

    def __init__(self):
        self.status = 0
        self.content_type = b"application/json"
        self.body = b""
        self.obj = None           # the parsed JSON object of a 2xx non-stream answer
        self.first_chunk = None
        self.resp: Optional[aiohttp.ClientResponse] = None
        self.state = None         # RouteState whose slot this outcome still holds (streams)
        self.route = ""
        self.reason = ""
        self.hops: list = []
        self.upstream_s = 0.0
        self.queue_s = 0.0
        self.extra_headers: list = []
        self.deadline = None      # loop time by which a stream must have ended (the route's total deadline)

    def close(self) -> None:
        """Gives back what the outcome holds: the engine response (closed, so the engine stops) and the slot."""
        if self.resp is not None:
            if self.resp.content.at_eof():
                self.resp.release()       # read to the end: the connection goes back to the pool
            else:
                self.resp.close()
            self.resp = None
        if self.state is not None:
            self.state.release()
            self.state = None


def error_kind(body: bytes) -> dict:
    """type/code of an engine error body (never its message: it may quote the prompt)."""
    try:
        obj = orjson.loads(body)
        e = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(e, dict):
            return {"type": e.get("type"), "code": e.get("code")}
    except Exception:
        pass
    return {}


def _looks_like_sse(buf: bytes) -> bool:
    head = buf.lstrip(b"\r\n")
    if not head:
        return False
    return any(head[:len(f)] == f[:len(head)] for f in SSE_FIELDS)


async def _read_sse_head(resp: aiohttp.ClientResponse) -> bytes:
    """Reads until the first line is complete (or 6 bytes are in); refuses what is not SSE."""
    ct = resp.headers.get("Content-Type", "")
    if ct and "event-stream" not in ct:
        raise EngineFailure("bad_stream", {"status": resp.status, "content_type": ct})
    buf = b""
    while b"\n" not in buf and len(buf) < 6:
        chunk = await resp.content.readany()
        if not chunk:
            break
        buf += chunk
    if not buf:
        raise EngineFailure("empty_stream", {"status": resp.status, "error": "the stream ended with zero bytes"})
    if not _looks_like_sse(buf):
        raise EngineFailure("bad_stream", {"status": resp.status, "content_type": ct, "bytes": len(buf)})
    return buf


def _parse_answer(resp: aiohttp.ClientResponse, body: bytes):
    """A 2xx non-stream answer must be one JSON object; anything else is the engine's failure."""
    ce = resp.headers.get("Content-Encoding")
    if ce and ce != "identity":
        return None        # we asked for identity; an encoded body is passed on as it came
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise EngineFailure("bad_response", {"status": resp.status, "content_type": resp.headers.get("Content-Type"),
                                             "bytes": len(body)})
    return obj


async def attempt(session: aiohttp.ClientSession, st, path: str, data: bytes, headers: dict, stream: bool) -> Outcome:
    """Sends one request to `st` under its deadlines. Holds no slot itself (the caller does)."""
    cfg = st.cfg
    loop = asyncio.get_running_loop()
    start = loop.time()
    total_at = start + cfg.total_timeout_s
    first_at = min(start + cfg.first_token_timeout_s, total_at)
    resp = None
    hooks = getattr(st, "hooks", None)     # a cloud route's provider adaptation (router_app/cloud/providers.py)
    url = st.base_url + path
    if hooks is not None:
        url, data = hooks.url(st.base_url, path), hooks.body(data, stream)
    keep = False      # the stream outcome owns the response
    clean = False     # the body was read to its end: the connection may be reused
    try:
        async with asyncio.timeout_at(first_at) as cm:
            try:
                resp = await session.post(url, data=data, headers=headers, timeout=st.timeout)
                if resp.status >= 500:
                    body = await resp.read()
                    clean = True
                    raise EngineFailure("http_5xx", {"status": resp.status, **error_kind(body)})
                if hooks is not None and resp.status in (401, 403, 429):   # the provider's limit or our key
                    await resp.read()
                    clean = True
                    if resp.status == 429:
                        ra = retry_after_s(resp.headers.get("Retry-After"), cfg.cloud.cooldown_s if cfg.cloud else 30)
                        raise EngineFailure("rate_limited", {"status": 429, "retry_after": round(ra, 3)})
                    raise EngineFailure("provider_auth", {"status": resp.status})
                out = Outcome()
                out.status = resp.status
                ct = resp.headers.get("Content-Type")
                if stream and resp.status == 200:
                    if hooks is not None and hooks.translate:
                        resp = hooks.stream(resp)
                    out.first_chunk = await _read_sse_head(resp)
                    out.content_type = (ct or "text/event-stream").encode("latin-1")
                    out.resp = resp
                    out.deadline = total_at
                    keep = True
                    return out
                cm.reschedule(total_at)
                out.body = await resp.read()
                clean = True
                if ct:
                    out.content_type = ct.encode("latin-1")
                ce = resp.headers.get("Content-Encoding")
                if ce and ce != "identity":
                    out.extra_headers.append((b"content-encoding", ce.encode("latin-1")))
                if 200 <= resp.status < 300:
                    out.obj = _parse_answer(resp, out.body)
                    if hooks is not None and hooks.translate:
                        out.obj = hooks.answer(out.obj)
                        out.body, out.content_type = orjson.dumps(out.obj), b"application/json"
                elif hooks is not None and hooks.translate:
                    out.body, out.content_type = hooks.error(out.body, resp.status), b"application/json"
                return out
            except asyncio.CancelledError:
                if cm.expired():
                    which = "total" if cm.when() >= total_at else "first_token"
                    raise EngineFailure("deadline", {"error": f"{which} deadline passed",
                                                     "deadline_s": round(cm.when() - start, 3)}) from None
                raise
    except TimeoutError:
        raise EngineFailure("timeout", {"error": "no bytes from the engine within the read timeout"}) from None
    except aiohttp.ClientConnectorError as exc:
        raise EngineFailure("connect", {"error": f"{type(exc).__name__}: {exc.os_error or exc}"}) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise EngineFailure("connection", {"error": f"{type(exc).__name__}: {exc}"}) from None
    finally:
        if resp is not None and not keep:
            if clean:
                resp.release()
            else:
                resp.close()      # a half-read answer: drop the connection, so the engine stops too


async def attempt_twice_on_a_dropped_connection(session: aiohttp.ClientSession, st, path: str, data: bytes,
                                                headers: dict, stream: bool) -> Outcome:
    """`attempt`, and once more when the engine dropped the connection before answering (kind "connection": the
    connection was made, then closed or reset with no complete answer; a refused dial is "connect" and is not
    retried). That is what reusing a pooled keep-alive connection the engine is closing looks like (llama-server and
    uvicorn close idle ones after 5 s), and a one-off network reset: neither says the engine is down. Nothing has
    reached the client yet, and a completion has no side effect beyond its compute, so sending it again is safe."""
    try:
        return await attempt(session, st, path, data, headers, stream)
    except EngineFailure as f:
        if f.kind != "connection":
            raise
    return await attempt(session, st, path, data, headers, stream)
