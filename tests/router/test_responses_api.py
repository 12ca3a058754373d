"""POST /v1/responses (issue 11 item 12) through the real router over loopback engines, with the official
`openai` SDK as the client: text, instructions, streaming events, a tool call round trip, an image routed to the
vision route, usage, clear 400s for what is not served, and the same auth/ledger pipeline as chat."""
from __future__ import annotations

import json
import sqlite3
import time

import httpx
import openai
import pytest

from conftest import MODELS  # noqa: E402
from tool_engine import CALL_ARGS  # noqa: E402

from router_app.access.store import Store

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
IMAGE = "data:image/png;base64,iVBORw0KGgo="



def sdk(r, key="none"):
    return openai.OpenAI(base_url=r.url + "/v1", api_key=key, max_retries=0, timeout=15)


def test_text_non_stream_with_instructions_and_usage(tool_router, tool_engines):
    r = tool_router()
    raw = sdk(r).responses.with_raw_response.create(
        model="homelab/chat", instructions="Answer briefly.", input="tell me about owls",
        max_output_tokens=64, temperature=0.2)
    assert raw.headers["x-homelab-route"] == "mouth" and raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.output_text == "mouth answers"
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (11, 7, 18)
    sent = tool_engines["mouth"].requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "Answer briefly."},
                                {"role": "user", "content": "tell me about owls"}]
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.2 and sent["model"] == MODELS["mouth"]
    # message items with input_text parts, auto-routed by the same classifier as chat
    resp = sdk(r).responses.create(model="homelab/auto", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "please refactor this code"}]}])
    assert resp.output_text == "hands answers"
    assert tool_engines["hands"].requests[-1]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "please refactor this code"}]}]


def test_stream_events(tool_router, tool_engines):
    r = tool_router()
    events = list(sdk(r).responses.create(model="homelab/chat", input="hi", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "mouth-0 mouth-1 mouth-2 "
    done = events[-1].response
    assert done.output_text == "mouth-0 mouth-1 mouth-2 " and done.status == "completed"
    assert done.usage.total_tokens == 8 and done.usage.input_tokens == 5
    assert events[0].response.id == done.id
    # the translated body asks for usage as a chat client may; the route's stream_usage does not matter
    assert tool_engines["mouth"].requests[-1]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_from_the_engine(tool_router, tool_engines):
    r = tool_router()
    tool_engines["mouth"].stream_usage = False       # an engine that ignores stream_options.include_usage
    events = list(sdk(r).responses.create(model="homelab/chat", input="hi", stream=True))
    assert [e.type for e in events][-1] == "response.completed"
    done = events[-1].response
    assert done.output_text == "mouth-0 mouth-1 mouth-2 " and done.status == "completed" and done.usage is None


def test_tool_call_round_trip(tool_router, tool_engines):
    r = tool_router()
    cl = sdk(r)
    first = cl.responses.create(model="homelab/code", input="What is the weather in Paris?", tools=TOOLS)
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == CALL_ARGS
    assert call.call_id == "call_1"
    sent = tool_engines["hands"].requests[-1]
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": TOOLS[0]["parameters"]}}
    second = cl.responses.create(model="homelab/code", tools=TOOLS, input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}])
    assert second.output_text == "hands: the tool said 18C and sunny"
    msgs = tool_engines["hands"].requests[-1]["messages"]
    assert msgs[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": CALL_ARGS}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}
    # the same call, streamed
    events = list(cl.responses.create(model="homelab/code", input="weather?", tools=TOOLS, stream=True))
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types and types[-1] == "response.completed"
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == CALL_ARGS
    item = events[-1].response.output[0]
    assert item.type == "function_call" and item.arguments == CALL_ARGS and item.call_id == "call_1"


def test_image_goes_to_the_vision_route(tool_router, tool_engines):
    r = tool_router()
    raw = sdk(r).responses.with_raw_response.create(model="homelab/auto", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "tell me about this"},
        {"type": "input_image", "image_url": IMAGE, "detail": "low"}]}])
    assert raw.headers["x-homelab-route"] == "eyes" and raw.headers["x-homelab-bucket"] == "vision"
    assert raw.parse().output_text == "eyes answers"
    part = tool_engines["eyes"].requests[-1]["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}}


@pytest.mark.parametrize("extra,code,param", [
    ({"previous_response_id": "resp_123"}, "stored_state_unsupported", "previous_response_id"),
    ({"tools": [{"type": "web_search"}]}, "unsupported_tool", "tools[0]"),
    ({"store": True}, "stored_state_unsupported", "store"),
    ({"seed": 3}, "unsupported_parameter", "seed"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "stored_state_unsupported", "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "unsupported_input", "input[0][0]"),
])
def test_unsupported_fields_are_clear_400s(tool_router, tool_engines, extra, code, param):
    r = tool_router()
    with pytest.raises(openai.BadRequestError) as ei:
        sdk(r).responses.create(model="homelab/chat", input="hi", extra_body=extra)
    err = ei.value.body
    assert err["code"] == code and err["param"] == param and err["message"]
    assert ei.value.response.headers["x-homelab-route"] == "none" and ei.value.response.headers["x-request-id"]
    assert not tool_engines["mouth"].requests             # nothing reached an engine


def test_same_pipeline_auth_unknown_model_and_ledger(tool_router, tool_engines, tmp_path):
    r = tool_router()
    store = Store(str(tmp_path / "state" / "router.sqlite3"))
    try:
        _, key = store.create_key("webapp", models=["homelab/chat"])
        with httpx.Client(base_url=r.url, timeout=10) as c:
            for _ in range(100):      # the router notices the new key
                x = c.post("/v1/responses", content=b"{not json")
                if x.status_code == 401:
                    break
                time.sleep(0.05)
            assert x.status_code == 401                 # authenticated on headers, before the body is parsed
        with pytest.raises(openai.AuthenticationError):
            sdk(r).responses.create(model="homelab/chat", input="hi")
        with pytest.raises(openai.PermissionDeniedError):
            sdk(r, key).responses.create(model="homelab/code", input="hi")
        with pytest.raises(openai.NotFoundError) as ei:
            sdk(r, key).responses.create(model="gpt-4o", input="hi")
        assert ei.value.body["code"] == "model_not_found"
        out = sdk(r, key).responses.create(model="homelab/chat", input="hi")
        assert out.output_text == "mouth answers"
        r.sync()
        assert r.app.access.flush()
        rows = sqlite3.connect(store.path).execute("SELECT app, route, total_tokens, status FROM usage").fetchall()
        assert rows == [("webapp", "mouth", 18, 200)]
        r.flush_logs()
        dec = [json.loads(ln) for ln in (tmp_path / "logs" / "router-decisions.jsonl").read_text().splitlines()]
        assert dec[-1]["route"] == "mouth" and dec[-1]["status"] == 200 and dec[-1]["endpoint"] == "responses"
        assert {d["endpoint"] for d in dec} == {"responses"}     # the refused calls too
    finally:
        store.close()
