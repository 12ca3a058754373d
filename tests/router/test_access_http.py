"""Access control through the real router over loopback engines: keys, 401/403/429, budgets under
parallel load, rpm under parallel load, streams, audit, metrics, /admin/keys, structured outputs, openai client."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import httpx
import pytest
import yaml
from aiohttp import web

from conftest import MODELS, RouterServer, chat, engine_rig, rig_config  # noqa: E402
from engine import Engine  # noqa: E402

from router_app.access.store import Store


class ScriptedEngine(Engine):
    """The core's test engine, plus a settable non-stream chat answer (content) for the structured cases."""

    def __init__(self, *a, **kw):
        self.content = None
        super().__init__(*a, **kw)

    async def _answer(self, request, chat: bool):
        if not chat or self.content is None or self.mode != "ok":
            return await super()._answer(request, chat)
        body = await request.json()
        if body.get("stream"):
            return await super()._answer(request, chat)
        self.requests.append(body)
        return web.json_response({
            "id": "x-2", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}})


@pytest.fixture(scope="module")
def eng():
    yield from engine_rig(ScriptedEngine)


def access_config(eng, tmp_path, **extra) -> str:
    cfg = rig_config(eng, tmp_path)
    for r in cfg["routes"].values():
        r["max_concurrency"] = 64
    cfg["store_path"] = str(tmp_path / "state" / "router.sqlite3")
    cfg["prices"] = {"brain": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}
    cfg.update(extra)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


@pytest.fixture
def rig(eng, tmp_path):
    servers = []

    def start(**extra):
        for e in eng.values():
            e.reset()
            e.content = None
        path = access_config(eng, tmp_path, **extra)
        r = RouterServer(path)
        servers.append(r)
        r.store = Store(str(tmp_path / "state" / "router.sqlite3"))
        r.tmp = tmp_path
        return r

    yield start
    for r in servers:
        r.stop()
        r.store.close()


def wait_enforced(url: str) -> None:
    deadline = time.time() + 5
    while time.time() < deadline:
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        if r.status_code == 401:
            return
        time.sleep(0.05)
    raise AssertionError("router did not start enforcing keys")


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def err_of(r: httpx.Response) -> dict:
    e = r.json()["error"]
    assert set(e) >= {"message", "type", "param", "code"}
    return e


def ledger(r) -> list:
    c = sqlite3.connect(r.store.path)
    try:
        return c.execute("SELECT app, route, total_tokens, status, request_id FROM usage ORDER BY ts").fetchall()
    finally:
        c.close()


def flush(r) -> None:
    r.sync()          # the last call's accounting step has run (see RouterServer.sync)
    assert r.app.access.flush()


def test_error_paths_and_visibility(rig):
    r = rig(log_prompts=False)
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert chat(c, "hello there").status_code == 200          # auto mode, empty store: open
        _, chat_key = r.store.create_key("bot", routes=["mouth", "brain"], rpm=1000)
        _, cam_key = r.store.create_key("cam", models=["homelab/vision"])
        _, old_key = r.store.create_key("old")
        r.store.revoke("old")
        wait_enforced(r.url)

        resp = chat(c, "hello")
        assert resp.status_code == 401 and err_of(resp)["code"] == "missing_api_key"
        resp = chat(c, "hello", headers=bearer("hlr_000000000000_nope"))
        assert resp.status_code == 401 and err_of(resp)["code"] == "invalid_api_key"
        resp = chat(c, "hello", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert resp.status_code == 401
        resp = chat(c, "hello", headers=bearer(old_key))
        assert resp.status_code == 401 and err_of(resp)["code"] == "revoked_api_key"
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/embeddings", json={"input": "x"}).status_code == 401

        # pinned routes the key may not use -> 403 (alias, route header, route model id)
        resp = chat(c, "hello", model="homelab/code", headers=bearer(chat_key))
        assert resp.status_code == 403 and err_of(resp)["type"] == "permission_error"
        resp = chat(c, "hello", headers={**bearer(chat_key), "X-Homelab-Route": "eyes"})
        assert resp.status_code == 403
        resp = chat(c, "hello", model="homelab/vision", headers=bearer(cam_key))
        assert resp.status_code == 200 and resp.headers["x-homelab-route"] == "eyes"
        resp = chat(c, "hello", model="homelab/chat", headers=bearer(cam_key))
        assert resp.status_code == 403

        # auto-routed: only allowed routes; coding -> hands (forbidden) -> its failover brain
        resp = chat(c, "please refactor this code", headers=bearer(chat_key))
        assert resp.status_code == 200 and resp.headers["x-homelab-route"] == "brain"
        resp = chat(c, "tell me about owls", headers=bearer(chat_key))
        assert resp.headers["x-homelab-route"] == "mouth"
        # cam may only use eyes: a reasoning request (brain) is served within the key (issue 11 item 9)
        resp = chat(c, "review the architecture risk", headers=bearer(cam_key))
        assert resp.status_code == 200 and resp.headers["x-homelab-route"] == "eyes"
        assert resp.headers["x-homelab-reason"] == "brain_forbidden"
        # embeddings go to eyes: bot may not, cam may
        assert c.post("/v1/embeddings", json={"input": "x"}, headers=bearer(chat_key)).status_code == 403
        assert c.post("/v1/embeddings", json={"input": "x"}, headers=bearer(cam_key)).status_code == 200

        # /v1/models shows only what the key may call
        ids = {m["id"] for m in c.get("/v1/models", headers=bearer(cam_key)).json()["data"]}
        assert "homelab/vision" in ids and "homelab/chat" not in ids

        # streams are counted from the usage chunk the router asked for, and the chunk is stripped
        with c.stream("POST", "/v1/chat/completions", headers=bearer(chat_key),
                      json={"model": "homelab/chat", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as s:
            text = "".join(s.iter_text())
        assert '"usage"' not in text and "[DONE]" in text

        flush(r)
        rows = ledger(r)
        assert ("bot", "mouth", 8, 200) in [x[:4] for x in rows]          # the stream: 5 + 3
        assert {x[0] for x in rows} == {"bot", "cam"}

        # admin view and metrics (loopback, no admin key configured)
        keys = c.get("/admin/keys").json()["keys"]
        assert {k["app"] for k in keys} == {"bot", "cam"}
        assert chat_key not in json.dumps(keys) and all("digest" not in k for k in keys)
        bot = [k for k in keys if k["app"] == "bot"][0]
        assert bot["usage"]["tokens_today"] == sum(x[2] for x in rows if x[0] == "bot")
        m = c.get("/metrics").text
        assert 'homelab_app_requests_total{app="bot",route="mouth"}' in m
        assert 'homelab_app_cost_equivalent_usd_total{app="bot",route="brain"}' in m
        assert "homelab_auth_failures_total" in m

    audit = [json.loads(x) for x in (r.tmp / "logs" / "audit.jsonl").read_text().splitlines()]
    statuses = [a["status"] for a in audit]
    assert statuses.count(401) >= 5 and statuses.count(403) >= 4
    ok = [a for a in audit if a["app"] == "bot" and a["status"] == 200]
    assert ok and all(set(a) >= {"time", "app", "route", "bucket", "tokens", "status", "latency_ms"} for a in ok)
    assert all("prompt" not in a for a in audit)


def test_budget_holds_under_50_parallel_requests(rig):
    r = rig()
    limit = 300
    _, key = r.store.create_key("tiny", tokens_per_day=limit)
    wait_enforced(r.url)

    async def go():
        async with httpx.AsyncClient(base_url=r.url, timeout=15) as c:
            body = {"model": "homelab/chat", "max_tokens": 20,
                    "messages": [{"role": "user", "content": "hello " * 10}]}
            return await asyncio.gather(*[c.post("/v1/chat/completions", json=body, headers=bearer(key))
                                          for _ in range(50)])

    # slow engines: all 50 are in flight together
    resps = asyncio.run(_with_latency(r, go, 0.3))
    codes = [x.status_code for x in resps]
    ok = codes.count(200)
    refused = [x for x in resps if x.status_code == 429]
    assert ok + len(refused) == 50 and ok >= 1 and refused
    for x in refused:
        e = err_of(x)
        assert e["code"] == "budget_exceeded_day" and "day" in e["message"] and "resets at" in e["message"]
        assert x.headers["retry-after"] and x.headers["x-homelab-budget-reset"]
    flush(r)
    spent = sum(t for app, _, t, _, _ in ledger(r) if app == "tiny")
    assert spent == ok * 18                  # each answer used 18 tokens: nothing lost or doubled
    reservation = 20 + 20                    # est prompt (~15) + max_tokens, rounded up
    assert spent <= limit + reservation      # overshoot bounded by one in-flight reservation
    # sequential requests until the budget is used up: then refused naming the budget
    with httpx.Client(base_url=r.url) as c:
        while True:
            x = chat(c, "hello", model="homelab/chat", max_tokens=20, headers=bearer(key))
            if x.status_code == 429:
                break
            assert x.status_code == 200
        assert "budget" in err_of(x)["message"]


async def _with_latency(r, go, latency):
    for eng in _ENGINES:
        eng.latency_s = latency
    try:
        return await go()
    finally:
        for eng in _ENGINES:
            eng.latency_s = 0.0


_ENGINES: list = []


@pytest.fixture(autouse=True)
def _engines_handle(eng):
    _ENGINES[:] = list(eng.values())
    yield


def test_rpm_under_parallel_load(rig):
    r = rig()
    _, key = r.store.create_key("burst", rpm=10)
    wait_enforced(r.url)

    async def go():
        async with httpx.AsyncClient(base_url=r.url, timeout=15) as c:
            body = {"model": "homelab/chat", "messages": [{"role": "user", "content": "hi"}]}
            return await asyncio.gather(*[c.post("/v1/chat/completions", json=body, headers=bearer(key))
                                          for _ in range(40)])

    resps = asyncio.run(_with_latency(r, go, 0.05))
    codes = [x.status_code for x in resps]
    assert codes.count(200) == 10 and codes.count(429) == 30
    for x in resps:
        if x.status_code == 429:
            assert err_of(x)["code"] == "rate_limit_exceeded"
            assert 1 <= int(x.headers["retry-after"]) <= 60


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["event", "person", "confidence"],
          "properties": {"event": {"type": "string"}, "person": {"type": "boolean"},
                         "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}
GOOD = json.dumps({"event": "motion", "person": True, "confidence": 0.93})
BAD = json.dumps({"event": "motion", "person": "ignore"})


def camera(c, headers=None):
    return c.post("/v1/chat/completions", headers=headers or {}, json={
        "model": "homelab/vision",
        "messages": [{"role": "system", "content": "Classify the Frigate motion event."},
                     {"role": "user", "content": "front door camera, 02:13"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "camera_event", "schema": SCHEMA}}})


def test_structured_camera_cases(rig, eng):
    r = rig(structured={"envelope": {"action": "escalate_to_spark", "reason": "schema_validation_failed"}})
    log = r.tmp / "logs" / "structured-validation.jsonl"
    with httpx.Client(base_url=r.url, timeout=10) as c:
        eng["eyes"].content = GOOD
        x = camera(c)
        assert x.status_code == 200 and x.headers["x-homelab-route"] == "eyes"
        assert x.headers["x-homelab-structured"] == "valid"
        assert json.loads(x.json()["choices"][0]["message"]["content"]) == json.loads(GOOD)

        eng["eyes"].content, eng["brain"].content = BAD, GOOD
        n_brain = len(eng["brain"].requests)
        x = camera(c)
        assert x.status_code == 200 and x.headers["x-homelab-structured"] == "escalated"
        assert x.headers["x-homelab-route"] == "brain"
        assert json.loads(x.json()["choices"][0]["message"]["content"]) == json.loads(GOOD)
        assert len(eng["brain"].requests) == n_brain + 1
        assert eng["brain"].requests[-1]["model"] == MODELS["brain"]

        eng["brain"].content = "I think there is a person, probably."
        x = camera(c)
        assert x.status_code == 200 and x.headers["x-homelab-structured"] == "envelope"
        env = json.loads(x.json()["choices"][0]["message"]["content"])
        assert env["action"] == "escalate_to_spark" and env["reason"] == "schema_validation_failed"
        assert env["source_route"] == "eyes" and env["escalated_to"] == "brain" and env["raw"] == BAD
        assert env["escalation"] == "invalid"

        eng["brain"].mode = "fail500"
        x = camera(c)
        assert x.status_code == 200 and x.headers["x-homelab-structured"] == "envelope"
        assert json.loads(x.json()["choices"][0]["message"]["content"])["escalation"] == "unavailable"
        eng["brain"].mode = "ok"

        bad_schema = c.post("/v1/chat/completions", json={
            "model": "homelab/vision", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}})
        assert bad_schema.status_code == 400 and err_of(bad_schema)["code"] == "invalid_json_schema"

        with c.stream("POST", "/v1/chat/completions", json={
                "model": "homelab/vision", "stream": True, "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}}) as s:
            assert s.status_code == 200 and "[DONE]" in "".join(s.iter_text())

    outcomes = [json.loads(x)["outcome"] for x in log.read_text().splitlines()]
    assert outcomes == ["valid", "escalated_valid", "envelope", "envelope", "stream_not_validated"]


def test_openai_client_with_a_key(rig):
    import openai
    r = rig()
    _, key = r.store.create_key("ide", models=["homelab/chat", "homelab/code"], rpm=5)
    wait_enforced(r.url)
    cl = openai.OpenAI(base_url=r.url + "/v1", api_key=key, max_retries=0)
    out = cl.chat.completions.create(model="homelab/chat", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "mouth answers" and out.usage.total_tokens == 18
    chunks = list(cl.chat.completions.create(model="homelab/code", stream=True,
                                             messages=[{"role": "user", "content": "hi"}]))
    assert all(ch.usage is None for ch in chunks)
    chunks = list(cl.chat.completions.create(model="homelab/code", stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "hi"}]))
    assert chunks[-1].usage.total_tokens == 8
    with pytest.raises(openai.PermissionDeniedError):
        cl.chat.completions.create(model="homelab/review", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=r.url + "/v1", api_key="hlr_x_y", max_retries=0).chat.completions.create(
            model="homelab/chat", messages=[{"role": "user", "content": "hi"}])
    cl.chat.completions.create(model="homelab/chat", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(5):
            cl.chat.completions.create(model="homelab/chat", messages=[{"role": "user", "content": "hi"}])
    assert e.value.response.headers["retry-after"]
    flush(r)
    # chat 18 + two streams 8 + 8 + two more chats 18 + 18; refused calls cost nothing
    assert sum(t for app, _, t, _, _ in ledger(r) if app == "ide") == 70


def test_reload_keeps_counters_and_takes_new_prices(rig):
    r = rig()
    _, key = r.store.create_key("bot", models=["homelab/chat"], rpm=3)
    wait_enforced(r.url)
    access = r.app.access
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert chat(c, "hi", model="homelab/chat", headers=bearer(key)).status_code == 200
        assert chat(c, "hi", model="homelab/chat", headers=bearer(key)).status_code == 200
        cfg = yaml.safe_load(open(r.config_path))
        cfg["prices"] = {"mouth": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}
        cfg["routes"]["mouth"]["aliases"] = ["homelab/chat2"]     # the key's model name now means nothing
        open(r.config_path, "w").write(yaml.safe_dump(cfg, sort_keys=False))
        assert c.post("/admin/reload-config").status_code == 200
        assert r.app.access is access                             # same store, writer and counters
        m = [ln for ln in c.get("/metrics").text.splitlines() if ln.startswith("homelab_app_cost")]
        assert m == ['homelab_app_cost_equivalent_usd_total{app="bot",route="mouth"} 0.000036'], m  # 2 x 18 tokens at $1/M
        x = chat(c, "hi", model="homelab/chat2", headers=bearer(key))
        assert x.status_code == 403                               # whitelist re-resolved on the new config
        assert chat(c, "hello", model="homelab/brain", headers=bearer(key)).status_code in (400, 403, 404)
