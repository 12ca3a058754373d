"""Issue 14, keyword-routed traffic on an on-demand engine, end to end on the REAL llama-server in router mode
(`--no-models-autoload`: the engine answers 400 "model is not loaded" to a request for a model nobody loaded).

A client that sends `homelab/auto` or a `homelab/<route>` alias never names the engine's model, so the catalog's
named-model path does not see it; the route's own `model` must still be made resident before dispatch, with the same
single flight, bounded wait and eviction rules (router_app/catalog/glue.py `before_route`). A CountingProxy
(tests/router/llama_router_rig.py, forwarding byte for byte) sits between the router and the engine and counts the
`POST /models/load` calls that reach the engine.

Also here: the loading notice on streams (router_app/v1/notice.py), read with the official `openai` SDK, and a load
that fails on a route that may fall back.
"""
from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
import yaml

from conftest import RouterServer, rig_config
from llama_router_rig import CountingProxy, start_llama_router, states, stop_llama_router

LOAD = ("POST", "/models/load")


@pytest.fixture
def llama(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    (d / "tiny-broken.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 16)   # listed, but its load fails
    proc, url, log = start_llama_router(d)
    proxy = CountingProxy(url)
    yield proc, url, proxy
    proxy.close()
    stop_llama_router(proc, log)


def _router(engines, tmp_path, proxy, model="tiny-alpha", refresh_s=0.5, **route_kw) -> RouterServer:
    def mutate(cfg):
        cfg["routes"]["small"] = {"url": proxy.url + "/v1", "model": model, "aliases": ["homelab/small"],
                                  "max_concurrency": 4, "max_queue": 200, "queue_timeout_s": 60,
                                  "first_byte_timeout_s": 60, "terminal": True,
                                  "catalog": {"engine": "llamacpp_router", "residency": "on_demand",
                                              "max_resident": 2, "load_timeout_s": 60}, **route_kw}
        if "failover" in route_kw:
            cfg["routes"]["small"].pop("terminal")
        cfg["buckets"]["unknown"]["route"] = "small"      # text that matches no keyword goes to the small route
        cfg["catalog"] = {"refresh_s": refresh_s, "wait_s": 60, "retry_after_s": 7}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(rig_config(engines, tmp_path, mutate), sort_keys=False))
    return RouterServer(str(path))


def _body(model: str, **kw) -> dict:
    return {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "hello there"}], **kw}


def test_keyword_and_alias_traffic_loads_the_routes_own_model(llama, engines, tmp_path):
    proc, lurl, proxy = llama
    r = _router(engines, tmp_path, proxy)
    try:
        c = httpx.Client(base_url=r.url, timeout=120)
        assert states(lurl)["tiny-alpha"] == "unloaded", "the engine must start cold for this test"
        # an alias on a cold route: one load, then the answer
        resp = c.post("/v1/chat/completions", json=_body("homelab/small"))
        assert resp.status_code == 200, f"alias on a cold route: {resp.status_code} {resp.text}"
        assert resp.headers["x-homelab-route"] == "small", resp.headers
        assert states(lurl)["tiny-alpha"] == "loaded"
        assert proxy.counts[LOAD] == 1, f"one load expected, the engine saw {proxy.counts}"
        # keyword-routed (homelab/auto, bucket unknown -> small) on the now hot model: no second load
        resp = c.post("/v1/chat/completions", json=_body("homelab/auto"))
        assert resp.status_code == 200 and resp.headers["x-homelab-route"] == "small", resp.text
        assert proxy.counts[LOAD] == 1, proxy.counts

        # cold again (the admin API unloads it), then 20 concurrent keyword requests: exactly one load
        un = c.post("/admin/models/unload", json={"model": "tiny-alpha"})
        assert un.status_code == 200 and un.json()["unloaded_from"] == ["small"], un.text
        assert states(lurl)["tiny-alpha"] == "unloaded"
        proxy.counts.clear()

        async def burst():
            async with httpx.AsyncClient(base_url=r.url, timeout=120) as ac:
                return await asyncio.gather(*(ac.post("/v1/chat/completions", json=_body("homelab/auto"))
                                              for _ in range(20)))
        answers = asyncio.run(burst())
        assert [a.status_code for a in answers] == [200] * 20, {a.status_code: a.text for a in answers}
        assert {a.headers["x-homelab-route"] for a in answers} == {"small"}
        assert proxy.counts[LOAD] == 1, f"20 concurrent cold requests must cause exactly one load: {proxy.counts}"
        assert proxy.counts[("POST", "/v1/chat/completions")] == 20, proxy.counts
        assert r.app.catalog.loads.get(("small", "tiny-alpha", "ok")) == 2, r.app.catalog.loads
        up = c.get("/admin/upstreams").json()["routes"]["small"]["engine"]
        assert up["in_flight_by_model"] == {}, f"every hold is given back after the answers: {up}"
    finally:
        r.stop()


def test_a_keyword_request_in_flight_keeps_its_model_resident(llama, engines, tmp_path):
    """alpha is the oldest resident, so eviction would pick it first (same size, longest idle); a keyword request
    in flight on it must make the router evict beta instead."""
    proc, lurl, proxy = llama
    r = _router(engines, tmp_path, proxy)
    try:
        c = httpx.Client(base_url=r.url, timeout=120)
        assert c.post("/v1/chat/completions", json=_body("homelab/small")).status_code == 200   # alpha hot
        assert c.post("/v1/chat/completions", json=_body("tiny-beta")).status_code == 200       # beta hot
        assert states(lurl) == {"tiny-alpha": "loaded", "tiny-beta": "loaded", "tiny-gamma": "unloaded",
                                "tiny-broken": "unloaded"}
        proxy.hold("/v1/chat/completions", b'"tiny-alpha"')

        async def scene():
            async with httpx.AsyncClient(base_url=r.url, timeout=120) as ac:
                held = asyncio.ensure_future(ac.post("/v1/chat/completions", json=_body("homelab/auto")))
                await asyncio.to_thread(proxy.wait_held, 1)
                up = (await ac.get("/admin/upstreams")).json()["routes"]["small"]["engine"]
                assert up["in_flight_by_model"] == {"tiny-alpha": 1}, up
                gamma = await ac.post("/v1/chat/completions", json=_body("tiny-gamma"))
                eng = await asyncio.to_thread(states, lurl)
                proxy.release()
                return gamma, eng, await held
        gamma, eng, held = asyncio.run(scene())
        assert gamma.status_code == 200, gamma.text
        assert eng["tiny-alpha"] == "loaded" and eng["tiny-beta"] == "unloaded" and eng["tiny-gamma"] == "loaded", \
            f"beta (idle) must be evicted, never alpha (a request in flight): {eng}"
        assert held.status_code == 200 and held.headers["x-homelab-route"] == "small", held.text
    finally:
        proxy.release()
        r.stop()


def test_stream_gets_a_loading_notice_and_the_sdk_ignores_it(llama, engines, tmp_path):
    proc, lurl, proxy = llama
    r = _router(engines, tmp_path, proxy)
    try:
        # raw bytes: the comment comes first, with the routing headers already on the 200
        with httpx.Client(base_url=r.url, timeout=120) as c:
            with c.stream("POST", "/v1/chat/completions", json=_body("homelab/small", stream=True)) as resp:
                assert resp.status_code == 200
                assert resp.headers["x-homelab-route"] == "small"
                assert resp.headers["content-type"].startswith("text/event-stream")
                raw = b"".join(resp.iter_raw())
        assert raw.startswith(b": loading tiny-alpha on small\n\n"), raw[:200]
        assert b"data: [DONE]" in raw and b'"error"' not in raw, raw[-300:]
        # hot now: no notice
        with httpx.Client(base_url=r.url, timeout=120) as c:
            raw = c.post("/v1/chat/completions", json=_body("homelab/small", stream=True)).content
        assert raw.startswith(b"data: "), raw[:200]

        # the official SDK on a cold model (named: the catalog's own path), notice included
        un = httpx.post(r.url + "/admin/models/unload", json={"model": "tiny-alpha"}, timeout=60)
        assert un.status_code == 200, un.text
        client = openai.OpenAI(base_url=r.url + "/v1", api_key="unused", max_retries=0)
        for model in ("tiny-alpha", "homelab/auto"):
            if model == "homelab/auto":
                assert httpx.post(r.url + "/admin/models/unload", json={"model": "tiny-alpha"},
                                  timeout=60).status_code == 200
            before = proxy.counts[LOAD]
            chunks = list(client.chat.completions.create(model=model, max_tokens=3, stream=True,
                                                          messages=[{"role": "user", "content": "hello there"}]))
            assert proxy.counts[LOAD] == before + 1, f"{model}: the stream had to wait for a load: {proxy.counts}"
            assert chunks and all(ch.object == "chat.completion.chunk" for ch in chunks), chunks
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert text, f"{model}: the SDK got the tokens after the notice: {chunks}"

        # a load that fails after the notice went out: the stream ends with an error event; the SDK raises it
        with pytest.raises(openai.APIError) as ei:
            list(client.chat.completions.create(model="tiny-broken", max_tokens=3, stream=True,
                                                messages=[{"role": "user", "content": "hi"}]))
        assert "tiny-broken" in str(ei.value) and "failed" in str(ei.value), str(ei.value)
        # the same failure on a plain request keeps its own status code (no notice, nothing committed)
        resp = httpx.post(r.url + "/v1/chat/completions", json=_body("tiny-broken"), timeout=60)
        assert resp.status_code == 503, resp.text
    finally:
        r.stop()


def test_a_failed_load_fails_over_for_keyword_traffic(llama, engines, tmp_path):
    proc, lurl, proxy = llama
    r = _router(engines, tmp_path, proxy, model="tiny-broken", failover="brain")
    try:
        resp = httpx.post(r.url + "/v1/chat/completions", json=_body("homelab/auto"), timeout=120)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-homelab-route"] == "brain", resp.headers
        assert resp.headers["x-homelab-reason"] == "small_load_failed", resp.headers
        assert proxy.counts[LOAD] == 1, proxy.counts
        # the alias pins the route, and a pin still follows its failover chain: the engine's last load of the model
        # failed, so placement refuses the route (no second load) and the request moves on
        r2 = httpx.post(r.url + "/v1/chat/completions", json=_body("homelab/small"), timeout=120)
        assert r2.status_code == 200 and r2.headers["x-homelab-route"] == "brain", (r2.status_code, r2.headers)
        assert r2.headers["x-homelab-reason"] == "small_load_failed", r2.headers
        assert proxy.counts[LOAD] == 1, f"a failed model is not loaded again on every request: {proxy.counts}"
    finally:
        r.stop()


def test_an_engine_restart_does_not_leave_a_stale_hot_model(tmp_path, engines):
    """The engine restarts (every model it had loaded is gone) while the registry still says hot; with no
    background refresh in between (refresh_s: 3600), the first request after the route is back must read the engine
    again and load, not send the request to an engine that answers 400 "model is not loaded"."""
    d = tmp_path / "models"
    d.mkdir()
    proc, lurl, log = start_llama_router(d)
    port = int(lurl.rsplit(":", 1)[1])
    proxy = CountingProxy(lurl)
    r = _router(engines, tmp_path, proxy, refresh_s=3600)
    try:
        c = httpx.Client(base_url=r.url, timeout=120)
        assert c.post("/v1/chat/completions", json=_body("homelab/small")).status_code == 200
        assert states(lurl)["tiny-alpha"] == "loaded"
        stop_llama_router(proc, log)
        r.probe()                                   # the router sees the outage
        assert c.get("/admin/upstreams").json()["routes"]["small"]["healthy"] is False
        proc, lurl2, log = start_llama_router(d, port=port)
        assert lurl2 == lurl and states(lurl)["tiny-alpha"] == "unloaded"
        r.probe()                                   # ...and the engine back, cold
        assert c.get("/admin/upstreams").json()["routes"]["small"]["healthy"] is True
        for model in ("homelab/small", "tiny-alpha"):
            resp = c.post("/v1/chat/completions", json=_body(model))
            assert resp.status_code == 200, f"{model} after an engine restart: {resp.status_code} {resp.text}"
            if model == "homelab/small":
                assert proxy.counts[LOAD] == 2, f"the restarted engine needed a load: {proxy.counts}"
    finally:
        r.stop()
        proxy.close()
        stop_llama_router(proc, log)


def test_an_engine_gone_before_the_router_knows_fails_over(llama, engines, tmp_path):
    """The engine dies and no probe has run yet: the load cannot connect. Keyword traffic moves on along the
    failover chain (an OpenAI-shaped answer, never a 502 router_error); a named model is a 503 model_load_failed."""
    proc, lurl, proxy = llama
    r = _router(engines, tmp_path, proxy, failover="brain")
    try:
        proc.terminate()
        proc.wait(10)
        proxy.close()             # nothing listens on the route's port any more: connection refused
        resp = httpx.post(r.url + "/v1/chat/completions", json=_body("homelab/auto"), timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-homelab-route"] == "brain" and resp.headers["x-homelab-reason"] == "small_load_failed"
        resp = httpx.post(r.url + "/v1/chat/completions", json=_body("tiny-beta"), timeout=60)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] in ("model_load_failed", "model_unavailable"), resp.text
        assert resp.headers["x-should-retry"] == "false" and int(resp.headers["retry-after"]) >= 1
    finally:
        r.stop()
