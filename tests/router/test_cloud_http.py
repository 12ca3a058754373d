"""Cloud routes end to end: the official openai SDK -> the router -> the fake providers (issue 18).

No test reaches a real provider: the cloud routes point at tests/doubles fakes on 127.0.0.1."""
from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
import yaml

from cloud_rig import ANTHROPIC_KEY, OPENAI_KEY, PNG, FakeAnthropic, FakeOpenAI, cloud_config, set_keys
from conftest import RouterServer
from engine import Engine
from router_app.access.store import Store

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def fakes():
    set_keys()
    fa, fo, local = FakeAnthropic(ANTHROPIC_KEY), FakeOpenAI(OPENAI_KEY), Engine("local", "gemma-4-31b")
    yield fa, fo, local
    fa.close()
    fo.close()
    local.close()


@pytest.fixture
def rig(fakes, tmp_path):
    fa, fo, local = fakes
    started = []

    def start(mutate=None, **extra):
        for f in fakes:
            f.reset()
        fa.stream_error = False
        cfg = cloud_config(local.url, fa.url, fo.url, tmp_path, **extra)
        cfg["routes"]["claude"]["first_token_timeout_s"] = 1
        cfg["store_path"] = str(tmp_path / f"state-{len(started)}" / "router.sqlite3")
        if mutate:
            mutate(cfg)
        path = tmp_path / f"router-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        store = Store(cfg["store_path"])
        keys = {"ide": store.create_key("ide", routes=["claude", "gpt", "mouth", "brain"])[1],
                "home": store.create_key("home", models=["homelab/auto"])[1]}
        store.close()
        r = RouterServer(str(path))
        r.keys = keys
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def client(r, app="ide") -> openai.OpenAI:
    return openai.OpenAI(api_key=r.keys[app], base_url=r.url + "/v1", max_retries=0, timeout=15)


def post(r, body, app="ide", headers=None) -> httpx.Response:
    h = {"Authorization": f"Bearer {r.keys[app]}", **(headers or {})}
    return httpx.post(r.url + "/v1/chat/completions", json=body, headers=h, timeout=15)


def test_anthropic_route_answers_openai_clients(rig, fakes):
    fa = fakes[0]
    r = rig()
    raw = client(r).chat.completions.with_raw_response.create(
        model="cloud/claude", messages=[{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hi"}])
    res = raw.parse()
    assert raw.headers["x-homelab-route"] == "claude"
    assert res.choices[0].message.content == "Hello from claude-sonnet-4-20250514"
    assert res.choices[0].finish_reason == "stop"
    assert res.usage.prompt_tokens > 0 and res.usage.completion_tokens > 0
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens
    sent, h = fa.requests[-1], fa.headers_seen[-1]
    assert sent["system"] == "be brief" and sent["max_tokens"] == 4096 and sent["model"] == "claude-sonnet-4-20250514"
    assert h["x-api-key"] == ANTHROPIC_KEY and h["anthropic-version"] == "2023-06-01"
    assert "authorization" not in h               # the client's router key never leaves the house


def test_anthropic_stream_with_tool_calls_and_usage(rig, fakes):
    r = rig()
    chunks = list(client(r).chat.completions.create(
        model="cloud/claude", messages=[{"role": "user", "content": "weather in Paris?"}], tools=TOOLS,
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert text == "Let me check."
    assert calls[0].id.startswith("toolu_") and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(args) == {"city": "Paris", "unit": "celsius"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens > 0 and chunks[-1].usage.completion_tokens > 1
    # without include_usage the router reads usage for accounting and the client sees no usage chunk
    plain = list(client(r).chat.completions.create(model="cloud/claude", stream=True,
                                                   messages=[{"role": "user", "content": "hi"}]))
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)


def test_tool_results_go_back_as_tool_result_blocks(rig, fakes):
    fa = fakes[0]
    r = rig()
    res = client(r).chat.completions.create(model="cloud/claude", tools=TOOLS, messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21 C"}])
    assert res.choices[0].message.content.startswith("Hello from")
    turns = fa.requests[-1]["messages"]
    assert turns[1]["content"][0] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                      "input": {"city": "Paris"}}
    assert turns[2]["content"][0]["type"] == "tool_result" and turns[2]["content"][0]["tool_use_id"] == "toolu_1"
    # a provider refusal comes back OpenAI-shaped (4xx: the client's answer, no failover)
    bad = post(r, {"model": "cloud/claude", "messages": [{"role": "user", "content": "x"},
                                                         {"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("anthropic: messages: tool_result")


def test_images_leave_only_with_the_flag(rig, fakes):
    fa = fakes[0]
    msg = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                        {"type": "image_url", "image_url": {"url": PNG}}]}]
    r = rig()
    refused = post(r, {"model": "cloud/claude", "messages": msg})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "image_to_cloud_refused"
    assert fa.requests == []

    def flag(cfg):
        cfg["routes"]["claude"].update(vision=True, cloud={"send_images": True})
    r = rig(flag)
    res = client(r).chat.completions.create(model="cloud/claude", messages=msg)
    assert res.choices[0].message.content.endswith("(I see 1 image(s))")
    block = fa.requests[-1]["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": PNG.split(",", 1)[1]}}


def test_whitelist_pins_and_bucket_mapping(rig, fakes):
    fa, fo, local = fakes
    r = rig()
    denied = post(r, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, app="home")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "cloud_route_forbidden"
    denied = post(r, {"messages": [{"role": "user", "content": "hi"}]}, app="home", headers={"X-Homelab-Route": "gpt"})
    assert denied.status_code == 403
    assert fo.requests == []
    ok = post(r, {"model": "homelab/auto", "messages": [{"role": "user", "content": "hi"}]},
              headers={"X-Homelab-Route": "gpt"})
    assert ok.status_code == 200 and ok.headers["x-homelab-route"] == "gpt"
    assert fo.headers_seen[-1]["authorization"] == f"Bearer {OPENAI_KEY}"
    # bucket `legal` maps to claude: the whitelisted key goes out, the homelab/auto key stays home
    out = post(r, {"messages": [{"role": "user", "content": "check this contract"}]})
    home = post(r, {"messages": [{"role": "user", "content": "check this contract"}]}, app="home")
    assert out.headers["x-homelab-route"] == "claude" and home.headers["x-homelab-route"] == "brain"


def test_429_retry_after_is_respected(rig, fakes):
    fa = fakes[0]
    r = rig()
    fa.mode, fa.retry_after = "rate_limited", "7"
    body = {"model": "cloud/claude", "messages": [{"role": "user", "content": "hi"}]}
    first = post(r, body)
    assert first.status_code == 503 and int(first.headers["retry-after"]) >= 7
    e = first.json()["error"]
    assert e["code"] == "route_unavailable" and e["type"] == "server_error" and "rate_limited" in e["message"]
    n = len(fa.requests)
    fa.mode = "ok"
    again = post(r, body)                            # inside the provider's Retry-After: not asked again
    assert again.status_code == 503 and 1 <= int(again.headers["retry-after"]) <= 7
    assert len(fa.requests) == n


def test_5xx_and_timeouts_are_engine_faults(rig, fakes):
    fa = fakes[0]

    def failover(cfg):
        cfg["routes"]["claude"].pop("terminal")
        cfg["routes"]["claude"]["failover"] = "brain"      # cloud -> local is always allowed
        cfg["routes"]["claude"]["cloud"] = {"cooldown_s": 0.2}
    r = rig(failover)
    fa.mode = "overloaded"
    res = post(r, {"model": "cloud/claude", "messages": [{"role": "user", "content": "hi"}]})
    assert res.status_code == 200 and res.headers["x-homelab-route"] == "brain"
    time.sleep(0.3)
    r2 = rig()
    for mode in ("fail500", "hang"):
        fa.mode = mode
        t = time.time()
        res = post(r2, {"model": "cloud/claude", "messages": [{"role": "user", "content": "hi"}]})
        assert res.status_code == 503 and res.json()["error"]["code"] == "route_unavailable", res.text
        assert time.time() - t < 5
        fa.reset()
        r2.app.runtime.states["claude"].cloud_until = 0        # the next mode starts with the route up


def test_stream_error_event_is_translated(rig, fakes):
    fa = fakes[0]
    r = rig()
    fa.stream_error = True
    with httpx.stream("POST", r.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {r.keys['ide']}"},
                      json={"model": "cloud/claude", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}, timeout=15) as s:
        text = s.read().decode()
    assert '"code":"overloaded_error"' in text and '"content":"Hello"' in text


def test_money_budget_and_cloud_spend_in_stats(rig, fakes):
    r = rig(cloud={"compare_to": "claude", "budgets": {"default": {"usd_per_month": 0.0002}}})
    body = {"model": "cloud/claude", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    assert post(r, body).status_code == 200          # a lone call may start while money is left
    refused = post(r, body)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded_usd_month"
    assert refused.headers["x-homelab-budget"] == "usd_month"
    assert post(r, {"model": "homelab/chat", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    r.sync()
    s = httpx.get(r.url + "/stats").json()["cloud"]
    assert s["spend_usd"]["ide"]["claude"] > 0.0002 and s["spend_usd_total"] == s["spend_usd"]["ide"]["claude"]
    assert s["saved_vs_cloud_usd"]["ide"]["mouth"] > 0 and s["compare_to"] == "claude"
    assert s["apps"]["ide"]["usd_per_month"] == 0.0002
    m = httpx.get(r.url + "/metrics").text
    assert 'homelab_cloud_spend_usd_total{app="ide",route="claude"}' in m
    assert 'homelab_cloud_budget_remaining_usd{app="ide",period="month"}' in m
    # a restart keeps the month's spend (priced again from the ledger)
    assert r.app.access.flush()
    r.stop()
    again = RouterServer(r.config_path)
    try:
        again_stats = httpx.get(again.url + "/stats").json()["cloud"]
        assert again_stats["apps"]["ide"]["usd_this_month"] > 0.0002
    finally:
        again.stop()


def test_openai_compatible_stream_is_accounted_without_showing_usage(rig, fakes):
    fo = fakes[1]

    def compatible(cfg):
        cfg["routes"]["gpt"].update(provider="openai_compatible", model="meta-llama/Llama-3.3-70B-Instruct-Turbo")
        cfg["prices"] = {"gpt": {"input_per_mtok": 0.88, "output_per_mtok": 0.88}}
    r = rig(compatible)
    chunks = list(client(r).chat.completions.create(model="meta-llama/Llama-3.3-70B-Instruct-Turbo", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Hello from meta-llama")
    assert all(c.usage is None for c in chunks)                       # the client did not ask for it
    assert fo.requests[-1]["stream_options"] == {"include_usage": True}  # the router did, for accounting
    r.sync()
    assert httpx.get(r.url + "/stats").json()["cloud"]["spend_usd"]["ide"]["gpt"] > 0
