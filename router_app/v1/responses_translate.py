"""OpenAI Responses API <-> chat completions: pure translation functions (no I/O).

`to_chat(body)` turns a POST /v1/responses body into a chat-completions body (ApiError 400 for what the router
does not serve); `from_chat(chat, req)` turns a chat.completion into a Response object. The stream translation is
router_app/v1/responses_stream.py; the ASGI glue is router_app/v1/responses.py.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Optional

from ..errors import ApiError

# Fields translated to chat; fields accepted with no effect; everything else is a 400 (never silently ignored).
_MAPPED = {"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
           "temperature", "top_p", "stream", "metadata", "user", "text", "reasoning"}
_NO_EFFECT = {"store", "include", "truncation", "service_tier", "safety_identifier", "prompt_cache_key",
              "stream_options", "background"}
_STATEFUL = {"previous_response_id", "conversation", "prompt"}
BUILTIN_TOOLS = ("web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter",
                 "image_generation", "mcp", "local_shell", "shell", "custom", "apply_patch")


def _bad(msg: str, param: Optional[str], code: str = "unsupported_parameter") -> ApiError:
    return ApiError(400, msg, param=param, code=code)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _check_fields(body: dict) -> None:
    for k, v in body.items():
        if k in _STATEFUL:
            if v is None:
                continue
            raise _bad(f"'{k}' needs stored responses, which this router does not keep: send the whole "
                       "conversation in 'input' (and store: false)", k, "stored_state_unsupported")
        if k not in _MAPPED and k not in _NO_EFFECT:
            raise _bad(f"'{k}' is not supported by this router's Responses API", k)
    if body.get("store") is True:
        raise _bad("store: true is not supported (responses are not stored); send store: false", "store",
                   "stored_state_unsupported")
    if body.get("background") is True:
        raise _bad("background responses are not supported", "background")
    if body.get("truncation") not in (None, "disabled"):
        raise _bad("only truncation: 'disabled' is supported", "truncation")


def _part(p: Any, where: str) -> dict:
    if isinstance(p, str):
        return {"type": "text", "text": p}
    if not isinstance(p, dict) or not isinstance(p.get("type"), str):
        raise _bad(f"{where}: each content part must be an object with a 'type'", where, "invalid_input")
    t = p["type"]
    if t in ("input_text", "output_text", "text"):
        if not isinstance(p.get("text"), str):
            raise _bad(f"{where}: '{t}' needs a string 'text'", where, "invalid_input")
        return {"type": "text", "text": p["text"]}
    if t == "input_image":
        url = p.get("image_url")
        if not isinstance(url, str) or not url:
            raise _bad(f"{where}: input_image needs 'image_url' (a URL or a data: URL); file_id is not supported",
                       where, "unsupported_input")
        img = {"url": url}
        if isinstance(p.get("detail"), str):
            img["detail"] = p["detail"]
        return {"type": "image_url", "image_url": img}
    raise _bad(f"{where}: content part type '{t}' is not supported (input_text, input_image)", where,
               "unsupported_input")


def _content(c: Any, where: str, text_only: bool = False):
    if isinstance(c, str):
        return c
    if not isinstance(c, list):
        raise _bad(f"{where}: 'content' must be a string or an array of parts", where, "invalid_input")
    parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(c)]
    if text_only:
        if any(p["type"] != "text" for p in parts):
            raise _bad(f"{where}: only text parts are allowed here", where, "unsupported_input")
        return "".join(p["text"] for p in parts)
    return parts


def _messages(inp: Any) -> list:
    if isinstance(inp, str):
        return [{"role": "user", "content": inp}]
    if not isinstance(inp, list) or not inp:
        raise _bad("'input' is required: a string or a non-empty array of items", "input", "missing_input")
    out: list = []
    for i, it in enumerate(inp):
        where = f"input[{i}]"
        if not isinstance(it, dict):
            raise _bad(f"{where}: each input item must be an object", where, "invalid_input")
        t = it.get("type", "message")
        if t == "message":
            role = it.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{where}: role must be user, assistant, system or developer", where, "invalid_input")
            out.append({"role": role, "content": _content(it.get("content"), where, role == "assistant")})
        elif t == "function_call":
            name, args, cid = it.get("name"), it.get("arguments"), it.get("call_id")
            if not (isinstance(name, str) and isinstance(args, str) and isinstance(cid, str)):
                raise _bad(f"{where}: function_call needs string 'call_id', 'name' and 'arguments'", where,
                           "invalid_input")
            call = {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            last = out[-1] if out else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif t == "function_call_output":
            cid = it.get("call_id")
            if not isinstance(cid, str):
                raise _bad(f"{where}: function_call_output needs a string 'call_id'", where, "invalid_input")
            out.append({"role": "tool", "tool_call_id": cid, "content": _content(it.get("output"), where, True)})
        elif t == "item_reference":
            raise _bad(f"{where}: item_reference needs stored state, which this router does not keep", where,
                       "stored_state_unsupported")
        else:
            raise _bad(f"{where}: input item type '{t}' is not supported (message, function_call, "
                       "function_call_output)", where, "unsupported_input")
    return out


def _tools(tools: Any) -> list:
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools", "invalid_tools")
    out = []
    for i, t in enumerate(tools):
        kind = t.get("type") if isinstance(t, dict) else None
        if kind != "function":
            what = f"built-in tool '{kind}'" if kind in BUILTIN_TOOLS else f"tool type '{kind}'"
            raise _bad(f"tools[{i}]: {what} is not supported; only function tools", f"tools[{i}]",
                       "unsupported_tool")
        if not isinstance(t.get("name"), str):
            raise _bad(f"tools[{i}]: a function tool needs a 'name'", f"tools[{i}]", "invalid_tools")
        fn = {"name": t["name"]}
        for k in ("description", "parameters", "strict"):
            if t.get(k) is not None:
                fn[k] = t[k]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(tc: Any) -> Any:
    if tc in ("auto", "none", "required"):
        return tc
    if isinstance(tc, dict) and tc.get("type") == "function" and isinstance(tc.get("name"), str):
        return {"type": "function", "function": {"name": tc["name"]}}
    raise _bad("tool_choice must be auto, none, required or {type: function, name}", "tool_choice")


def _text_format(text: Any) -> Optional[dict]:
    if not isinstance(text, dict):
        raise _bad("'text' must be an object", "text")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        js = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": js}
    raise _bad("text.format must be text, json_object or json_schema", "text.format")


def to_chat(body: dict) -> dict:
    """A Responses request body -> a chat-completions body. ApiError(400) for what is not served."""
    _check_fields(body)
    msgs = _messages(body.get("input"))
    ins = body.get("instructions")
    if ins is not None:
        if not isinstance(ins, str):
            raise _bad("'instructions' must be a string", "instructions", "invalid_request")
        msgs.insert(0, {"role": "system", "content": ins})
    chat: dict = {"messages": msgs}
    if "model" in body:
        chat["model"] = body["model"]
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens"),
                     ("parallel_tool_calls", "parallel_tool_calls"), ("metadata", "metadata"), ("user", "user")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("text") is not None:
        rf = _text_format(body["text"])
        if rf is not None:
            chat["response_format"] = rf
    r = body.get("reasoning")
    if isinstance(r, dict) and isinstance(r.get("effort"), str):
        chat["reasoning_effort"] = r["effort"]
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}    # the usage goes into response.completed
    return chat


def usage_of(u: Any) -> Optional[dict]:
    if not isinstance(u, dict):
        return None
    pt, ct = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": pt, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": ct,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(u.get("total_tokens") or pt + ct)}


def message_item(text: str, item_id: Optional[str] = None, status: str = "completed") -> dict:
    return {"type": "message", "id": item_id or new_id("msg"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(call_id: str, name: str, arguments: str, item_id: Optional[str] = None,
              status: str = "completed") -> dict:
    return {"type": "function_call", "id": item_id or new_id("fc"), "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def envelope(req: dict, resp_id: str, created: int, model: Any, status: str, output: list,
             usage: Optional[dict], finish: Optional[str] = None) -> dict:
    """The Response object (the parts of it this router can fill)."""
    incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
    if incomplete and status == "completed":
        status = "incomplete"
    return {
        "id": resp_id, "object": "response", "created_at": created, "status": status, "error": None,
        "incomplete_details": incomplete, "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"), "model": model, "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls", True), "temperature": req.get("temperature"),
        "tool_choice": req.get("tool_choice", "auto"), "tools": req.get("tools") or [],
        "top_p": req.get("top_p"), "text": req.get("text") or {"format": {"type": "text"}},
        "truncation": "disabled", "metadata": req.get("metadata") or {}, "store": False, "usage": usage,
    }


def from_chat(chat: dict, req: dict) -> dict:
    """A chat.completion -> a Response object (text as a message item, tool calls as function_call items)."""
    choice = (chat.get("choices") or [{}])[0] if isinstance(chat.get("choices"), list) else {}
    msg = choice.get("message") or {} if isinstance(choice, dict) else {}
    output: list = []
    text = msg.get("content")
    if isinstance(text, str) and text:
        output.append(message_item(text))
    for tc in msg.get("tool_calls") or []:
        fn = tc.get("function") or {} if isinstance(tc, dict) else {}
        output.append(call_item(tc.get("id") or new_id("call"), fn.get("name") or "", fn.get("arguments") or ""))
    if not output:
        output.append(message_item(""))
    return envelope(req, new_id("resp"), int(chat.get("created") or time.time()), chat.get("model") or req.get("model"),
                    "completed", output, usage_of(chat.get("usage")), choice.get("finish_reason"))
