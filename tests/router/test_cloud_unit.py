"""Pure pieces of the cloud package: the Anthropic translation both ways, Retry-After, prices, spend."""
from __future__ import annotations

import json

import orjson
import pytest

from router_app.cloud.anthropic_req import to_anthropic
from router_app.cloud.anthropic_resp import to_chat_completion, to_openai_error
from router_app.cloud.anthropic_sse import Translator
from router_app.cloud.prices import cost, list_price
from router_app.cloud.providers import retry_after_s
from router_app.errors import ApiError


def test_request_translation():
    body = {"model": "x", "max_tokens": 77, "stop": "END", "temperature": 0.2, "user": "u1", "stream": True,
            "parallel_tool_calls": False, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
                "type": "object"}}}],
            "messages": [{"role": "system", "content": "s1"}, {"role": "developer", "content": "s2"},
                         {"role": "user", "content": [{"type": "text", "text": "look"}, {
                             "type": "image_url", "image_url": {"url": "https://example.invalid/a.jpg"}}]},
                         {"role": "user", "content": "again"}]}
    out = to_anthropic(body, "claude-x", 4096)
    assert out["system"] == "s1\n\ns2" and out["max_tokens"] == 77 and out["model"] == "claude-x"
    assert out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "u1"} and out["stream"] is True
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object"}, "description": "d"}]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert len(out["messages"]) == 1      # consecutive user turns merged
    assert out["messages"][0]["content"][1] == {"type": "image", "source": {"type": "url",
                                                                            "url": "https://example.invalid/a.jpg"}}
    assert to_anthropic({"messages": [{"role": "user", "content": "x"}]}, "m", 99)["max_tokens"] == 99


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}, "tools"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}, "messages"),
])
def test_what_anthropic_cannot_express_is_a_400(body, param):
    with pytest.raises(ApiError) as ei:
        to_anthropic(body, "m", 10)
    assert ei.value.status == 400 and ei.value.code == "unsupported_by_provider" and ei.value.param == param


def test_response_translation():
    msg = {"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
           "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"k": 1}}],
           "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2,
                     "output_tokens": 3}}
    out = to_chat_completion(msg)
    m = out["choices"][0]
    assert m["finish_reason"] == "tool_calls" and m["message"]["content"] == "a"
    assert m["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"k":1}'}
    assert out["usage"] == {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20,
                            "prompt_tokens_details": {"cached_tokens": 5}}
    assert to_chat_completion({"content": [], "stop_reason": "max_tokens"})["choices"][0]["finish_reason"] == "length"
    err = orjson.loads(to_openai_error(b'{"type":"error","error":{"type":"not_found_error","message":"no model"}}',
                                       404))["error"]
    assert err == {"message": "anthropic: no model", "type": "invalid_request_error", "param": None,
                   "code": "not_found_error"}
    assert orjson.loads(to_openai_error(b"<html>", 413))["error"]["message"] == "anthropic: the provider answered HTTP 413"


def _sse(events) -> bytes:
    return b"".join(f"event: {e['type']}\r\ndata: {json.dumps(e)}\r\n\r\n".encode() for e in events)


def test_stream_translation_survives_any_chunking():
    events = [
        {"type": "message_start", "message": {"id": "msg_9", "model": "claude-x", "usage": {"input_tokens": 12}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hé"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ":1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 8}},
        {"type": "message_stop"},
    ]
    raw = _sse(events)
    for size in (1, 7, len(raw)):
        tr = Translator()
        out = b"".join(tr.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + tr.flush()
        frames = [f[6:] for f in out.split(b"\n\n") if f]
        assert frames[-1] == b"[DONE]"
        chunks = [orjson.loads(f) for f in frames[:-1]]
        assert chunks[0]["id"] == "chatcmpl-msg_9" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        args = "".join(tc["function"].get("arguments", "") for c in chunks if c["choices"]
                       for tc in c["choices"][0]["delta"].get("tool_calls", ()))
        assert text == "Hé" and json.loads(args) == {"a": 1}
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 8,
                                                                      "total_tokens": 20}


def test_retry_after_and_prices():
    assert retry_after_s("7", 30) == 7 and retry_after_s(None, 30) == 30 and retry_after_s("soon", 30) == 30
    assert 0 <= retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 30) <= 1       # a date in the past: now
    assert list_price("anthropic", "claude-sonnet-4-20250514") == (3.0, 15.0)
    assert list_price("openai", "gpt-4o-mini-2024-07-18") == (0.15, 0.60)    # longest prefix, not gpt-4o
    assert list_price("openai", "gpt-5-unknown") is None
    assert cost((3.0, 15.0), 1_000_000, 1_000_000) == pytest.approx(18.0)
