"""Pure translation tests for the Responses API (router_app/v1/responses_translate.py, responses_stream.py)."""
from __future__ import annotations

import json

import pytest

from router_app.errors import ApiError
from router_app.v1.responses_stream import ResponsesStream
from router_app.v1.responses_translate import from_chat, to_chat


def events(raw: bytes) -> list:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            ev, data = block.split("\n", 1)
            assert ev.startswith("event: ") and data.startswith("data: ")
            obj = json.loads(data[6:])
            assert obj["type"] == ev[7:]
            out.append(obj)
    return out


def chunk(delta=None, finish=None, **extra) -> bytes:
    obj = {"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta or {},
                                                                          "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def test_to_chat_maps_fields():
    c = to_chat({"model": "homelab/chat", "input": "hi", "instructions": "sys", "max_output_tokens": 9,
                 "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"},
                                     "strict": True}},
                 "tool_choice": {"type": "function", "name": "f"}, "reasoning": {"effort": "low", "summary": "auto"},
                 "store": False, "include": [], "stream": True})
    assert c["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert c["max_tokens"] == 9 and c["reasoning_effort"] == "low"
    assert c["response_format"] == {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"},
                                                                          "strict": True}}
    assert c["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert c["stream"] is True and c["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("body,param", [
    ({"input": []}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0]"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0]"),
    ({"input": "x", "truncation": "auto"}, "truncation"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0]"),
    ({"input": "x", "instructions": 3}, "instructions"),
])
def test_to_chat_refuses_clearly(body, param):
    with pytest.raises(ApiError) as ei:
        to_chat(body)
    assert ei.value.status == 400 and ei.value.param == param


def test_from_chat_incomplete_at_max_tokens():
    r = from_chat({"model": "m", "choices": [{"message": {"content": "abc"}, "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}, {"max_output_tokens": 2})
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["output"][0]["content"][0]["text"] == "abc" and r["usage"]["total_tokens"] == 5


def test_stream_split_across_reads_and_usage():
    s = ResponsesStream({"model": "homelab/chat"})
    raw = s.start()
    data = chunk({"role": "assistant", "content": "he"}) + chunk({"content": "llo"}) + chunk({}, "stop") + \
        b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}\n\n' + \
        b"data: [DONE]\n\n"
    for i in range(0, len(data), 7):            # arbitrary TCP read boundaries
        raw += s.feed(data[i:i + 7])
    raw += s.close()
    evs = events(raw)
    assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == "hello"
    assert evs[-1]["type"] == "response.completed" and evs[-1]["response"]["usage"]["total_tokens"] == 6
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))


def test_stream_error_becomes_error_and_failed():
    s = ResponsesStream({})
    raw = s.start() + s.feed(chunk({"content": "x"}))
    raw += s.feed(b'data: {"error": {"message": "upstream stream broke", "code": "upstream_stream_broken"}}\n\n')
    raw += s.close()
    types = [e["type"] for e in events(raw)]
    assert types[-2:] == ["error", "response.failed"]
