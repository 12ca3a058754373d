"""Issue 14 end to end on the REAL llama-server in router mode (the vendored llama.cpp, built by
tests/tools/build_llama_server_cache.sh): `--models-dir` with three tiny GGUF models
(tests/fixtures/make_tiny_gguf.py), `--models-max 2`, `--no-models-autoload` (only the router loads), on loopback
behind the real router.

Checked: the catalog lists the three models with their states; a model on disk is loaded on demand; 100 concurrent
requests for one cold model cause exactly one load (single flight) and every one is answered; the third model evicts
the least recently used idle one (deterministic: same size, then idle time); an unknown name is a 404
model_not_found; with the node down an installed model is a 503 with Retry-After and x-should-retry: false;
`homelab-router explain --router` shows the candidates and rejections.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
import yaml

from conftest import RouterServer, rig_config
from llama_router_rig import NAMES, REPO, start_llama_router, states as _states, stop_llama_router


@pytest.fixture(scope="module")
def llama_router(tmp_path_factory):
    proc, url, log = start_llama_router(tmp_path_factory.mktemp("models"))
    yield proc, url
    stop_llama_router(proc, log)


def _chat(client, model, **kw):
    return client.post("/v1/chat/completions", json={"model": model, "max_tokens": 2,
                                                     "messages": [{"role": "user", "content": "hi"}]}, **kw)


def test_router_mode_end_to_end(llama_router, engines, tmp_path):
    proc, lurl = llama_router

    def mutate(cfg):
        cfg["routes"]["small"] = {"url": lurl + "/v1", "model": "tiny-alpha", "max_concurrency": 4,
                                  "max_queue": 200, "queue_timeout_s": 60, "first_byte_timeout_s": 60, "terminal": True,
                                  "catalog": {"engine": "llamacpp_router", "residency": "on_demand",
                                              "max_resident": 2, "load_timeout_s": 60}}
        cfg["catalog"] = {"refresh_s": 0.5, "wait_s": 60, "retry_after_s": 7}
    cfg = rig_config(engines, tmp_path, mutate)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = RouterServer(str(path))
    try:
        c = httpx.Client(base_url=r.url, timeout=120)
        # the catalog, from the registry
        ids = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert "homelab/auto" in ids
        for n in NAMES:
            assert ids[n]["homelab"]["states"]["small"] == "on_disk", ids[n]
        # on disk -> loaded on demand, then routed
        resp = _chat(c, "tiny-alpha")
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-homelab-route"] == "small" and resp.headers["x-homelab-reason"] == "catalog_load"
        assert _states(lurl)["tiny-alpha"] == "loaded"
        resp = _chat(c, "tiny-alpha")
        assert resp.status_code == 200 and resp.headers["x-homelab-reason"] == "catalog_hot"
        assert _chat(c, "tiny-beta").status_code == 200
        assert _states(lurl) == {"tiny-alpha": "loaded", "tiny-beta": "loaded", "tiny-gamma": "unloaded"}

        # single flight: 100 concurrent requests for the cold third model -> exactly one load
        started = r.app.catalog.flights.started

        async def burst():
            async with httpx.AsyncClient(base_url=r.url, timeout=120) as ac:
                return await asyncio.gather(*(_achat(ac) for _ in range(100)))

        async def _achat(ac):
            return await ac.post("/v1/chat/completions", json={"model": "tiny-gamma", "max_tokens": 1,
                                                               "messages": [{"role": "user", "content": "hi"}]})
        answers = asyncio.run(burst())
        assert [a.status_code for a in answers] == [200] * 100, {a.status_code: a.text for a in answers}
        assert r.app.catalog.flights.started == started + 1
        assert r.app.catalog.loads[("small", "tiny-gamma", "ok")] == 1
        # eviction: same size, so the longest idle (alpha) went; beta stays
        assert _states(lurl) == {"tiny-alpha": "unloaded", "tiny-beta": "loaded", "tiny-gamma": "loaded"}

        # 404 for a name installed nowhere (OpenAI's shape)
        resp = _chat(c, "tiny-nope")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"

        # explain: candidates, scores, rejections (the four fake routes do not have it)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-m", "router_app.cli.main", "explain", "--config", str(path),
                              "--router", r.url, "--model", "tiny-alpha"], capture_output=True, text=True,
                             env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "choice:   small  (on_disk)" in out.stdout and "evict:" in out.stdout

        # admin: the engine's state per route
        up = c.get("/admin/upstreams").json()["routes"]["small"]["engine"]
        assert up["engine"] == "llamacpp_router" and up["state"] in ("ok", "busy")
        assert up["models"]["tiny-gamma"] == "hot"

        # installed, but no live node: 503, Retry-After, x-should-retry: false
        proc.terminate()
        proc.wait(10)
        r.probe()
        resp = _chat(c, "tiny-beta")
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "model_unavailable"
        assert resp.headers["retry-after"] == "7" and resp.headers["x-should-retry"] == "false"
        # homelab/* aliases keep working beside the catalog
        assert c.post("/v1/chat/completions", json={"model": "homelab/auto", "messages": [
            {"role": "user", "content": "hello"}]}).status_code == 200
    finally:
        r.stop()
