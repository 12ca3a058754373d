"""Issue 14 over the doubles of engines that cannot run here (tests/doubles/catalog_engines.py, each citing the API
documentation it follows): Ollama and LM Studio load on demand and unload through the admin API; vLLM's own queue
depth makes the route busy (visible in /admin/upstreams and /metrics), stale figures fall back to the router's count,
and a sleeping vLLM is woken."""
from __future__ import annotations

import os
import sys
import time

import httpx
import pytest
import yaml

from conftest import RouterServer, rig_config, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "doubles"))
from catalog_engines import LmStudioDouble, OllamaDouble, VllmDouble  # noqa: E402

GB = 1024 ** 3


@pytest.fixture
def doubles():
    d = {"ollama": OllamaDouble({"llama3.2:3b": 2 * GB, "qwen3:8b": 5 * GB, "phi4:14b": 9 * GB}),
         "lms": LmStudioDouble({"qwen/qwen3-4b": 3 * GB, "google/gemma-3-12b": 8 * GB}),
         "vllm": VllmDouble("big-70b-awq")}
    yield d
    for x in d.values():
        x.close()


def _router(engines, tmp_path, doubles, vllm_extra=None):
    def mutate(cfg):
        common = {"max_concurrency": 2, "terminal": True, "queue_timeout_s": 2, "first_byte_timeout_s": 5}
        cfg["routes"]["ollama"] = {"url": doubles["ollama"].url + "/v1", "model": "llama3.2:3b", **common,
                                   "catalog": {"engine": "ollama", "residency": "on_demand", "vram_mb": 12 * 1024,
                                               "max_resident": 2}}
        cfg["routes"]["lms"] = {"url": doubles["lms"].url + "/v1", "model": "qwen/qwen3-4b", **common,
                                "catalog": {"engine": "lmstudio", "residency": "on_demand", "max_resident": 1}}
        cfg["routes"]["big"] = {"url": doubles["vllm"].url + "/v1", "model": "big-70b-awq", **common,
                                "catalog": {"engine": "vllm", "residency": "pinned", "busy_waiting": 5,
                                            **(vllm_extra or {})}}
        cfg["catalog"] = {"refresh_s": 0.2, "stale_s": 1.0}
    cfg = rig_config(engines, tmp_path, mutate)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return RouterServer(str(path))


def _chat(c, model):
    return c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_ollama_and_lmstudio_load_on_demand_and_unload(engines, tmp_path, doubles):
    r = _router(engines, tmp_path, doubles)
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        ids = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert ids["qwen3:8b"]["homelab"]["states"] == {"ollama": "on_disk"}
        assert ids["google/gemma-3-12b"]["homelab"]["states"] == {"lms": "on_disk"}
        # Ollama: loaded through /api/generate (keep_alive -1), then routed
        resp = _chat(c, "qwen3:8b")
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-homelab-reason"] == "catalog_load"
        assert ("POST", "/api/generate", {"model": "qwen3:8b", "keep_alive": -1, "stream": False}) \
            in doubles["ollama"].calls
        # the VRAM ledger: 5 GB resident + 9 GB does not fit a 12 GB card -> qwen3:8b is evicted for phi4:14b
        assert _chat(c, "phi4:14b").status_code == 200
        assert set(doubles["ollama"].running) == {"phi4:14b"}
        # LM Studio (JIT off: without the router's load the engine would refuse with 400)
        resp = _chat(c, "google/gemma-3-12b")
        assert resp.status_code == 200, resp.text
        assert list(doubles["lms"].instances.values()) == ["google/gemma-3-12b"]
        # max_resident 1: the other model evicts it (unload by instance id)
        assert _chat(c, "qwen/qwen3-4b").status_code == 200
        assert list(doubles["lms"].instances.values()) == ["qwen/qwen3-4b"]
        # explicit unload / load through the admin API
        u = c.post("/admin/models/unload", json={"model": "qwen/qwen3-4b"})
        assert u.status_code == 200 and u.json()["unloaded_from"] == ["lms"] and not doubles["lms"].instances
        ld = c.post("/admin/models/load", json={"model": "google/gemma-3-12b", "route": "lms"})
        assert ld.status_code == 200 and ld.json()["route"] == "lms"
        assert c.post("/admin/models/load", json={"model": "nope"}).json()["error"]["code"] == "model_not_found"
        assert c.post("/admin/models/load", json={}).status_code == 400
        # unknown names stay a 404 (OpenAI's shape)
        resp = _chat(c, "llama3:70b")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    finally:
        r.stop()


def test_vllm_queue_depth_makes_the_route_busy_and_goes_stale(engines, tmp_path, doubles):
    r = _router(engines, tmp_path, doubles)
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        v = doubles["vllm"]
        v.waiting = 7
        wait_for(lambda: c.get("/admin/upstreams").json()["routes"]["big"]["engine"]["engine_waiting"] == 7,
                 what="engine figures read")
        up = c.get("/admin/upstreams").json()["routes"]["big"]["engine"]
        assert up["state"] == "busy" and up["busy_source"] == "engine" and up["kv_cache_usage"] == 0.25
        assert 'homelab_router_engine_queue_depth{route="big"} 7' in c.get("/metrics").text
        # busy: the pinned model's route is terminal with no spill -> 503 route_busy, do not retry
        resp = _chat(c, "big-70b-awq")
        assert resp.status_code == 503 and resp.headers["x-should-retry"] == "false"
        v.waiting = 0
        wait_for(lambda: _chat(c, "big-70b-awq").status_code == 200, what="engine queue drained")
        # stale figures (the engine stops answering /metrics) fall back to the router's own count
        v.close()
        time.sleep(1.5)
        up = c.get("/admin/upstreams").json()["routes"]["big"]["engine"]
        assert up["busy_source"] == "router" and up["engine_waiting"] is None
    finally:
        r.stop()


def test_sleeping_vllm_is_woken(engines, tmp_path, doubles):
    v = doubles["vllm"]
    v.sleeping = True
    r = _router(engines, tmp_path, doubles, {"sleep_wake": True})
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        assert c.get("/admin/catalog").json()["routes"]["big"]["models"] == {"big-70b-awq": "sleeping"}
        # a route's own model id on a pinned route keeps the policy path; sleep_wake makes it on demand
        resp = _chat(c, "big-70b-awq")
        assert resp.status_code == 200 and resp.headers["x-homelab-reason"] == "catalog_load"
        assert ("POST", "/wake_up", None) in v.calls and not v.sleeping
    finally:
        r.stop()


def test_gpu_group_one_engine_resident_at_a_time(engines, tmp_path, doubles):
    """Seed 000: llama-server shares the GPU with Ollama, only one runs at a time -> routes in one gpu_group: loading
    on one unloads the other's models first."""
    def mutate(cfg):
        common = {"max_concurrency": 2, "terminal": True, "queue_timeout_s": 2, "first_byte_timeout_s": 5}
        cfg["routes"]["ollama"] = {"url": doubles["ollama"].url + "/v1", "model": "llama3.2:3b", **common,
                                   "catalog": {"engine": "ollama", "residency": "on_demand", "gpu_group": "card0"}}
        cfg["routes"]["lms"] = {"url": doubles["lms"].url + "/v1", "model": "qwen/qwen3-4b", **common,
                                "catalog": {"engine": "lmstudio", "residency": "on_demand", "gpu_group": "card0"}}
        cfg["catalog"] = {"refresh_s": 0.2}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(rig_config(engines, tmp_path, mutate), sort_keys=False))
    r = RouterServer(str(path))
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        assert _chat(c, "qwen3:8b").status_code == 200 and set(doubles["ollama"].running) == {"qwen3:8b"}
        assert _chat(c, "google/gemma-3-12b").status_code == 200
        assert doubles["ollama"].running == {} and list(doubles["lms"].instances.values()) == ["google/gemma-3-12b"]
        assert _chat(c, "phi4:14b").status_code == 200
        assert doubles["lms"].instances == {} and set(doubles["ollama"].running) == {"phi4:14b"}
    finally:
        r.stop()


def test_idle_ttl_unloads_and_a_failed_load_is_a_503(engines, tmp_path, doubles):
    def mutate(cfg):
        common = {"max_concurrency": 2, "terminal": True, "queue_timeout_s": 2, "first_byte_timeout_s": 5}
        cfg["routes"]["ollama"] = {"url": doubles["ollama"].url + "/v1", "model": "llama3.2:3b", **common,
                                   "catalog": {"engine": "ollama", "residency": "on_demand", "idle_ttl_s": 0.3}}
        cfg["routes"]["lms"] = {"url": doubles["lms"].url + "/v1", "model": "qwen/qwen3-4b", **common,
                                "catalog": {"engine": "lmstudio", "residency": "on_demand"}}
        cfg["catalog"] = {"refresh_s": 0.2, "retry_after_s": 9}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(rig_config(engines, tmp_path, mutate), sort_keys=False))
    r = RouterServer(str(path))
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        assert _chat(c, "qwen3:8b").status_code == 200 and "qwen3:8b" in doubles["ollama"].running
        wait_for(lambda: doubles["ollama"].running == {}, timeout=5, what="idle model unloaded")
        doubles["lms"].fail_load = "not enough memory to load the model"
        resp = _chat(c, "google/gemma-3-12b")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "model_load_failed"
        assert resp.headers["retry-after"] == "9" and resp.headers["x-should-retry"] == "false"
        assert "not enough memory" in resp.json()["error"]["message"]
    finally:
        r.stop()
