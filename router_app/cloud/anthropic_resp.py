"""Anthropic Messages answers -> OpenAI shapes (https://docs.anthropic.com/en/api/messages,
https://docs.anthropic.com/en/api/errors; OpenAI: https://platform.openai.com/docs/api-reference/chat/object).

  text blocks -> message.content; tool_use blocks -> message.tool_calls (input re-encoded as JSON arguments);
  stop_reason -> finish_reason (anthropic_req.FINISH); usage input(+cache)/output -> prompt/completion/total;
  an Anthropic error body {"type": "error", "error": {"type", "message"}} -> {"error": {message, type, param, code}}.
"""
from __future__ import annotations

import json
import time
from typing import Any

import orjson

from .anthropic_req import FINISH


def usage_of(u: Any) -> dict:
    u = u if isinstance(u, dict) else {}
    cached = int(u.get("cache_read_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + int(u.get("cache_creation_input_tokens") or 0) + cached
    comp = int(u.get("output_tokens") or 0)
    out = {"prompt_tokens": prompt, "completion_tokens": comp, "total_tokens": prompt + comp}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def tool_call(block: dict) -> dict:
    return {"id": block.get("id") or "", "type": "function",
            "function": {"name": block.get("name") or "",
                         "arguments": json.dumps(block.get("input") or {}, separators=(",", ":"))}}


def to_chat_completion(msg: dict) -> dict:
    text: list[str] = []
    calls: list[dict] = []
    for b in msg.get("content") or ():
        if not isinstance(b, dict):
            continue
        if b.get("type") == "text":
            text.append(str(b.get("text", "")))
        elif b.get("type") == "tool_use":
            calls.append(tool_call(b))
    message: dict = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + str(msg.get("id") or "anthropic"), "object": "chat.completion",
        "created": int(time.time()), "model": msg.get("model") or "",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": FINISH.get(msg.get("stop_reason") or "end_turn", "stop")}],
        "usage": usage_of(msg.get("usage")),
    }


ERROR_TYPES = {"invalid_request_error": "invalid_request_error", "not_found_error": "invalid_request_error",
               "request_too_large": "invalid_request_error", "permission_error": "permission_error",
               "authentication_error": "authentication_error", "rate_limit_error": "rate_limit_exceeded",
               "api_error": "server_error", "overloaded_error": "server_error"}


def to_openai_error(body: bytes, status: int) -> bytes:
    """The provider's error in OpenAI's shape (the message is the provider's, prefixed with where it came from)."""
    etype, msg = "api_error", f"the provider answered HTTP {status}"
    try:
        obj = orjson.loads(body)
        e = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(e, dict):
            etype = str(e.get("type") or etype)
            msg = str(e.get("message") or msg)
    except orjson.JSONDecodeError:
        pass
    return orjson.dumps({"error": {"message": f"anthropic: {msg}", "type": ERROR_TYPES.get(etype, "invalid_request_error"),
                                   "param": None, "code": etype}})
