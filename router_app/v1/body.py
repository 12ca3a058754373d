"""Reading and checking a /v1 request body. Everything here runs before a decision is made or a slot is taken, so
bad input is always a 400 (413, 408) that costs the router nothing else."""
from __future__ import annotations

import asyncio
import re
from typing import Optional

import orjson

from ..errors import ApiError

BODY_TIMEOUT_S = 60.0     # the longest a client may take to send a request body
MAX_DEPTH = 128           # JSON nesting the router accepts (the encoder stops at 255)
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def content_length(scope, limit: int) -> Optional[int]:
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                n = int(v)
            except ValueError:
                raise ApiError(400, "invalid Content-Length header", code="invalid_request") from None
            if n > limit:
                raise ApiError(413, f"request body is {n} bytes; the limit is {limit}",
                               code="request_too_large", headers={"Connection": "close"})
            return n
    return None


async def read_body(scope, receive, limit: int, timeout_s: Optional[float] = None) -> bytes:
    """The whole body, or 413 (over `limit`) / 408 (a client that stalls) / 400 (a client that left)."""
    content_length(scope, limit)
    t = BODY_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        async with asyncio.timeout(t):
            return await _read_chunks(receive, limit)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {t:g}s",
                       code="request_timeout", headers={"Connection": "close"}) from None


async def _read_chunks(receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected", code="client_disconnected")
        b = msg.get("body", b"")
        if b:
            size += len(b)
            if size > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes",
                               code="request_too_large", headers={"Connection": "close"})
            chunks.append(b)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _depth_ok(obj, limit: int) -> bool:
    """False when containers nest deeper than `limit` (iterative: no recursion limit to trip)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, dict):
            for v in o.values():
                if isinstance(v, (dict, list)):
                    stack.append((v, d + 1))
        else:
            for v in o:
                if isinstance(v, (dict, list)):
                    stack.append((v, d + 1))
    return True


def parse_json(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        m = _SURROGATE.search(raw) if "surrogate" in str(exc) else None
        if m is not None:
            raise ApiError(400, f"request body has a lone UTF-16 surrogate escape ({m.group().decode()}) in a "
                                "string; strings must be valid Unicode (escape a pair, or send UTF-8)",
                           code="invalid_unicode") from None
        if "depth" in str(exc):
            raise ApiError(400, f"request body nests deeper than {MAX_DEPTH} levels", code="too_deep") from None
        raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_request")
    if not _depth_ok(body, MAX_DEPTH):
        raise ApiError(400, f"request body nests deeper than {MAX_DEPTH} levels", code="too_deep")
    return body


def _bad(msg: str, param: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, msg, param=param, code=code)


def check_chat(body: dict) -> None:
    """The router reads `role` and each content part's `type`: those must be strings when present (a list or an
    object there is a 400). Other odd shapes (a missing role, a dict content) are left to the engine."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _bad("'messages' is required and must be a non-empty array", "messages", "missing_messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _bad("each message must be an object", f"messages[{i}]", "invalid_messages")
        role = m.get("role")
        if role is not None and not isinstance(role, str):
            raise _bad(f"'role' must be a string, not {type(role).__name__}", f"messages[{i}].role",
                       "invalid_messages")
        c = m.get("content")
        if not isinstance(c, list):
            continue
        for j, p in enumerate(c):
            if isinstance(p, dict):
                t = p.get("type")
                if t is not None and not isinstance(t, str):
                    raise _bad(f"a content part's 'type' must be a string, not {type(t).__name__}",
                               f"messages[{i}].content[{j}].type", "invalid_messages")


def check_completion(body: dict) -> None:
    if not isinstance(body.get("prompt"), (str, list)):
        raise _bad("'prompt' is required (a string or an array)", "prompt", "missing_prompt")


def check_embeddings(body: dict) -> None:
    inp = body.get("input")
    if not isinstance(inp, (str, list)) or not inp:
        raise _bad("'input' is required (a string or an array)", "input", "missing_input")


CHECKS = {"chat": check_chat, "completions": check_completion, "embeddings": check_embeddings}


def check_common(body: dict) -> None:
    s = body.get("stream")
    if s is not None and not isinstance(s, bool):     # the engine would stream while the router expects JSON
        raise _bad(f"'stream' must be a boolean, not {type(s).__name__}", "stream")


def parse_body(raw: bytes, endpoint: str) -> dict:
    """JSON object, nesting, and the shapes the router reads; each failure is a 400 naming the field."""
    body = parse_json(raw)
    check_common(body)
    CHECKS[endpoint](body)
    return body
