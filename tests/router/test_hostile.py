"""Issue 11, items 2-5, 7, 8: hostile input, clients that leave, broken and slow engines, retries, auth first.

Real loopback engines (tests/router/engine.py) behind a real router; the official openai SDK where a client's
behaviour is the point."""
from __future__ import annotations

import json
import sqlite3
import time

import httpx
import openai
import pytest

from conftest import chat, wait_for
from hostile_helpers import chat_body, in_flight, keyed, raw_request, read_log, read_response, stat


def deep(n: int) -> str:
    return "[" * n + '"x"' + "]" * n


def hostile_bodies() -> list:
    msg = '{"role": "user", "content": "tell me about rivers"}'
    out = []
    for n in (255, 300, 600, 1000, 1021):      # parsed fine by orjson (limit 1024), too deep to re-encode (255)
        out.append(('{"model": "homelab/auto", "messages": [%s], "metadata": {"x": %s}}' % (msg, deep(n))).encode())
    out.append(('{"model": "homelab/auto", "messages": [%s]}' % deep(1100)).encode())   # past orjson's own limit
    for bad in ('{"role": ["user"], "content": "hi"}', '{"role": {"r": "user"}, "content": "hi"}',
                '{"role": "user", "content": [{"type": ["text"], "text": "hi"}]}',
                '{"role": "user", "content": [{"type": {"t": "image_url"}, "text": "hi"}]}'):
        out.append(('{"model": "homelab/auto", "messages": [%s]}' % bad).encode())
    return out


# ------------------------------------------------------------------------------------------------ item 2
def test_hostile_bodies_are_400_and_never_keep_a_slot(router, client):
    before = chat(client, "tell me about rivers")
    assert before.status_code == 200
    route = before.headers["x-homelab-route"]
    bodies = hostile_bodies()
    for i in range(20):
        raw = bodies[i % len(bodies)]
        r = client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (raw[:80], r.text[:200])
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
        assert r.headers["x-request-id"]
    assert all(v == 0 for v in in_flight(router).values()), in_flight(router)
    for _ in range(10):
        r = chat(client, "tell me about rivers")
        assert r.status_code == 200
        assert (r.headers["x-homelab-route"], r.headers["x-homelab-reason"]) == \
            (route, before.headers["x-homelab-reason"])
    assert stat(client, "requests", status=502) == 0 and stat(client, "requests", status=503) == 0


def test_lone_surrogate_gets_a_clear_400(client):
    raw = b'{"model": "homelab/auto", "messages": [{"role": "user", "content": "broken \\ud800 text"}]}'
    r = client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_unicode" and "surrogate" in err["message"] and "\\ud800" in err["message"]


# ------------------------------------------------------------------------------------------------ item 3
def test_client_leaving_before_the_first_byte_frees_the_slot_and_is_499(make_router, engines, tmp_path):
    holder = {}

    def mutate(cfg):
        holder["key"] = keyed(cfg, tmp_path)
    router = make_router(mutate)
    key = holder["key"]
    mouth = engines["mouth"]
    cap = router.app.runtime.states["mouth"].max_concurrency
    mouth.hold()
    socks = [raw_request(router.port, json.dumps(chat_body()).encode(), {"Authorization": f"Bearer {key}"})
             for _ in range(cap)]
    wait_for(lambda: mouth.in_flight == cap, what="mouth full")
    assert router.app.runtime.states["mouth"].in_flight == cap
    for s in socks:
        s.close()
    # the router notices at once: the slots come back while the engine is still holding the answers
    wait_for(lambda: router.app.runtime.states["mouth"].in_flight == 0, timeout=3, what="slots back")
    mouth.release()
    with httpx.Client(base_url=router.url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as c:
        r = chat(c, "tell me about rivers")
        assert r.status_code == 200 and r.headers["x-homelab-route"] == "mouth"
        assert r.headers["x-homelab-reason"] != "mouth_saturated"
        assert stat(c, "requests", status=499) == cap
        assert stat(c, "requests", status=200) == 1
    lines = read_log(router, "router-decisions.jsonl")
    assert [ln["status"] for ln in lines].count(499) == cap
    assert router.app.access.flush()
    con = sqlite3.connect(router.app.access.store.path)
    try:
        statuses = [row[0] for row in con.execute("SELECT status FROM usage")]
    finally:
        con.close()
    assert sorted(statuses) == [200] + [499] * cap


# ------------------------------------------------------------------------------------------------ item 4
@pytest.mark.parametrize("mode,stream,kind", [
    ("truncated", False, "bad_response"), ("html", False, "bad_response"),
    ("not_sse", True, "bad_stream"), ("empty_stream", True, "empty_stream"),
])
def test_broken_200_is_an_engine_failure_before_the_first_byte(router, client, engines, mode, stream, kind):
    engines["mouth"].mode = mode
    if stream:
        with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
            text = "".join(r.iter_text())
    else:
        r = chat(client, "tell me about rivers")
        text = r.text
    assert r.status_code == 200
    assert (r.headers["x-homelab-route"], r.headers["x-homelab-reason"]) == ("brain", "mouth_down")
    assert "brain" in text and ("[DONE]" in text if stream else r.json()["choices"])
    assert router.app.runtime.states["mouth"].healthy is False
    fails = read_log(router, "upstream-failures.jsonl")
    assert [(f["route"], f["kind"]) for f in fails] == [("mouth", kind)]
    assert stat(client, "upstream_failures", route="mouth", kind=kind) == 1
    events = read_log(router, "router-events.jsonl")
    assert any(e["event"] == "health" and e["route"] == "mouth" and e["healthy"] is False for e in events)
    assert all(v == 0 for v in in_flight(router).values())


# ------------------------------------------------------------------------------------------------ item 5
def test_dribbling_engine_is_cut_at_the_total_deadline_and_fails_over(make_router, engines):
    router = make_router(lambda cfg: cfg["routes"]["mouth"].update(total_timeout_s=0.6))
    engines["mouth"].mode = "dribble"
    with httpx.Client(base_url=router.url, timeout=15) as c:
        t = time.perf_counter()
        r = chat(c, "tell me about rivers")
        took = time.perf_counter() - t
    assert r.status_code == 200 and took < 3, took
    assert (r.headers["x-homelab-route"], r.headers["x-homelab-reason"]) == ("brain", "mouth_down")
    assert router.app.runtime.states["mouth"].in_flight == 0
    fails = read_log(router, "upstream-failures.jsonl")
    assert fails[0]["kind"] == "deadline" and "total" in fails[0]["error"]


def test_slow_first_token_fails_over_at_the_first_token_deadline(make_router, engines):
    router = make_router(lambda cfg: cfg["routes"]["mouth"].update(first_token_timeout_s=0.3))
    engines["mouth"].latency_s = 3
    with httpx.Client(base_url=router.url, timeout=15) as c:
        t = time.perf_counter()
        r = chat(c, "tell me about rivers")
        took = time.perf_counter() - t
    assert r.status_code == 200 and took < 2, took
    assert (r.headers["x-homelab-route"], r.headers["x-homelab-reason"]) == ("brain", "mouth_down")
    assert "first_token" in read_log(router, "upstream-failures.jsonl")[0]["error"]


def test_dribbling_stream_ends_with_a_deadline_error_event(make_router, engines):
    router = make_router(lambda cfg: cfg["routes"]["mouth"].update(total_timeout_s=0.8))
    engines["mouth"].mode = "dribble_stream"
    with httpx.Client(base_url=router.url, timeout=15) as c:
        t = time.perf_counter()
        with c.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
            assert r.status_code == 200 and r.headers["x-homelab-route"] == "mouth"
            lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
        took = time.perf_counter() - t
    assert took < 3, took
    assert json.loads(lines[-1][6:])["error"]["code"] == "upstream_deadline"
    wait_for(lambda: router.app.runtime.states["mouth"].in_flight == 0, timeout=2, what="slot back")


# ------------------------------------------------------------------------------------------------ item 7
def test_terminal_503_is_not_retried_by_the_openai_sdk(router, engines):
    engines["mouth"].mode = "fail500"
    engines["brain"].mode = "fail500"
    oai = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=2, timeout=10)
    with pytest.raises(openai.InternalServerError) as ei:
        oai.chat.completions.create(model="homelab/auto", messages=[{"role": "user", "content": "tell me about rivers"}])
    resp = ei.value.response
    assert resp.status_code == 503
    assert resp.headers["x-should-retry"] == "false" and int(resp.headers["retry-after"]) >= 1
    assert resp.headers["x-homelab-route"] == "brain"
    lines = read_log(router, "router-decisions.jsonl")
    assert len(lines) == 1 and lines[0]["status"] == 503        # exactly one request reached the router
    # and every other 503 the router makes says the same (here: the chain is known down)
    r = httpx.post(router.url + "/v1/chat/completions", json=chat_body())
    assert r.status_code == 503 and r.headers["x-should-retry"] == "false" and r.headers["retry-after"]


# ------------------------------------------------------------------------------------------------ item 8
def test_authentication_comes_before_the_body(make_router, tmp_path):
    router = make_router(lambda cfg: keyed(cfg, tmp_path))
    r = httpx.post(router.url + "/v1/chat/completions", content=b"{not json", headers={"Content-Type":
                                                                                       "application/json"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    # 30 MB announced, 10 bytes sent: the 401 comes within a moment; the router reads what comes of the body first
    # (a proxy still sending it would lose the answer: router_app/ops/readfirst.py), but not past a pause of 0.5 s
    t = time.perf_counter()
    s = raw_request(router.port, b'{"model": ', content_length=30 * 1024 * 1024)
    s.settimeout(3)
    try:
        data = read_response(s)
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 401"), data[:200]
    assert b"connection: close" in data.lower()          # the rest of that body is never read
    assert time.perf_counter() - t < 2
