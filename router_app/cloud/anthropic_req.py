"""OpenAI chat body -> Anthropic Messages body (https://docs.anthropic.com/en/api/messages).

Mapping (pure; raises ApiError 400 for what the Messages API cannot express):
  system/developer messages       -> `system` (joined with blank lines)
  user text / image_url parts     -> text blocks / image blocks (base64 `source` for data: URLs, `url` source else)
  assistant content + tool_calls  -> text + tool_use blocks (arguments parsed back into `input`)
  tool messages                   -> a user turn of tool_result blocks (consecutive ones merged)
  max_completion_tokens/max_tokens-> max_tokens (required there: the route's cloud.default_max_tokens otherwise)
  stop -> stop_sequences; temperature, top_p; user -> metadata.user_id; stream
  tools/tool_choice/parallel_tool_calls -> tools (input_schema) / tool_choice {auto|any|none|tool}
Consecutive turns of the same role are merged (the API expects user and assistant to alternate).
"""
from __future__ import annotations

import json
from typing import Any, Optional

from ..errors import ApiError

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}


def _bad(msg: str, param: Optional[str] = None) -> ApiError:
    return ApiError(400, msg, code="unsupported_by_provider", param=param)


def _image_block(part: dict) -> dict:
    iu = part.get("image_url")
    url = iu.get("url") if isinstance(iu, dict) else iu
    if not isinstance(url, str) or not url:
        raise _bad("an image_url part needs a url", "messages")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media = head[5:].split(";", 1)[0] or "image/png"
        if ";base64" not in head:
            raise _bad("data: image URLs must be base64", "messages")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for p in content if isinstance(content, list) else ():
        if isinstance(p, str):
            out.append({"type": "text", "text": p})
        elif isinstance(p, dict):
            t = p.get("type")
            if t == "text":
                out.append({"type": "text", "text": str(p.get("text", ""))})
            elif t == "image_url":
                out.append(_image_block(p))
            else:
                raise _bad(f"content part type '{t}' cannot be sent to an Anthropic route", "messages")
    return out


def _text_of(content: Any) -> str:
    return "".join(b["text"] for b in _blocks(content) if b["type"] == "text")


def _tool_calls(calls: Any) -> list:
    out = []
    for c in calls if isinstance(calls, list) else ():
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments") or "{}"
        try:
            inp = json.loads(args) if isinstance(args, str) else args
        except ValueError:
            raise _bad(f"tool call '{fn.get('name')}' has arguments that are not JSON", "messages") from None
        out.append({"type": "tool_use", "id": c.get("id") or "", "name": fn.get("name") or "",
                    "input": inp if isinstance(inp, dict) else {"value": inp}})
    return out


def _messages(msgs: list) -> tuple[str, list]:
    system: list[str] = []
    turns: list[dict] = []

    def push(role: str, blocks: list) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for m in msgs:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("system", "developer"):
            t = _text_of(m.get("content"))
            if t:
                system.append(t)
        elif role == "user":
            push("user", _blocks(m.get("content")))
        elif role == "assistant":
            push("assistant", [b for b in _blocks(m.get("content")) if b["type"] == "text"]
                 + _tool_calls(m.get("tool_calls")))
        elif role == "tool":
            push("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id") or "",
                           "content": _text_of(m.get("content"))}])
        else:
            raise _bad(f"message role '{role}' cannot be sent to an Anthropic route", "messages")
    return "\n\n".join(system), turns


def _tools(tools: Any) -> list:
    out = []
    for t in tools if isinstance(tools, list) else ():
        fn = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if not isinstance(fn, dict):
            raise _bad("only function tools can be sent to an Anthropic route", "tools")
        d = {"name": fn.get("name"), "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            d["description"] = fn["description"]
        out.append(d)
    return out


def _tool_choice(tc: Any, parallel: Any) -> Optional[dict]:
    if tc is None and parallel is not False:
        return None
    if tc is None or tc == "auto":
        d = {"type": "auto"}
    elif tc == "required":
        d = {"type": "any"}
    elif tc == "none":
        return {"type": "none"}
    elif isinstance(tc, dict) and isinstance(tc.get("function"), dict):
        d = {"type": "tool", "name": tc["function"].get("name")}
    else:
        raise _bad("tool_choice cannot be expressed for an Anthropic route", "tool_choice")
    if parallel is False:
        d["disable_parallel_tool_use"] = True
    return d


def to_anthropic(body: dict, model: str, default_max_tokens: int) -> dict:
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise _bad("n > 1 cannot be sent to an Anthropic route", "n")
    system, turns = _messages(body.get("messages") or [])
    if not turns:
        raise _bad("an Anthropic route needs at least one user message", "messages")
    mt = body.get("max_completion_tokens") or body.get("max_tokens")
    out: dict = {"model": model, "max_tokens": mt if isinstance(mt, int) and mt > 0 else default_max_tokens,
                 "messages": turns}
    if system:
        out["system"] = system
    for k in ("temperature", "top_p"):
        if isinstance(body.get(k), (int, float)):
            out[k] = body[k]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream") is True:
        out["stream"] = True
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    tc = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if tc is not None and (out.get("tools") or tc["type"] == "none"):
        out["tool_choice"] = tc
    return out
