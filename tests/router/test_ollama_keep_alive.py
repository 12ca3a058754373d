"""Issue 12: each model of one Ollama keeps its own keep_alive.

The router reaches Ollama over its OpenAI-compatible API, which has no keep_alive field (openai/openai.go,
ChatCompletionRequest): a request there leaves a loaded model's keep_alive alone and loads a cold one for the
server's OLLAMA_KEEP_ALIVE (server/sched.go). The Ollama double (tests/doubles/catalog_engines.py) applies those
rules, so without the router's own /api/generate {model, keep_alive} after an answer (router_app/catalog/keep_alive.py)
the models here would keep the double's 5m default and these tests fail.
"""
from __future__ import annotations

import os
import sys
import time

import httpx
import openai
import pytest
import yaml

from conftest import RouterServer, rig_config, wait_for
from hostile_helpers import read_log

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "doubles"))
from catalog_engines import FOREVER, OllamaDouble, go_duration, ollama_keep_alive  # noqa: E402

from router_app.decision import durations  # noqa: E402
from router_app.decision.config import validate_dict  # noqa: E402

GB = 1024 ** 3


@pytest.fixture
def ollama():
    d = OllamaDouble({"llama3.1:8b": 5 * GB, "qwen2.5vl:7b": 6 * GB, "phi4:14b": 9 * GB}, server_keep_alive="5m")
    yield d
    d.close()


def _router(engines, tmp_path, ollama, catalog=False, **keep):
    """Three routes on one Ollama (one server, many models); `keep` maps route -> keep_alive."""
    def mutate(cfg):
        common = {"max_concurrency": 2, "terminal": True, "queue_timeout_s": 2, "first_byte_timeout_s": 5}
        for route, model in (("chat", "llama3.1:8b"), ("eyes-o", "qwen2.5vl:7b"), ("plain", "phi4:14b")):
            cfg["routes"][route] = {"url": ollama.url + "/v1", "model": model, **common}
            if route in keep:
                cfg["routes"][route]["keep_alive"] = keep[route]
            if catalog:
                cfg["routes"][route]["catalog"] = {"engine": "ollama", "residency": "on_demand"}
        if catalog:
            cfg["catalog"] = {"refresh_s": 0.2, "stale_s": 1.0}
    cfg = rig_config(engines, tmp_path, mutate)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return RouterServer(str(path))


def _generate_calls(d, model):
    return [c[2] for c in d.calls if c[1] == "/api/generate" and (c[2] or {}).get("model") == model]


def test_each_model_keeps_its_own_keep_alive_after_chats(engines, tmp_path, ollama):
    r = _router(engines, tmp_path, ollama, chat="10m", **{"eyes-o": "-1"})
    try:
        client = openai.OpenAI(base_url=r.url + "/v1", api_key="unused", max_retries=0)
        for route in ("chat", "eyes-o", "plain"):
            out = client.chat.completions.create(model=route, messages=[{"role": "user", "content": "hi"}],
                                                 extra_headers={"x-homelab-route": route})
            assert out.choices[0].message.content == "ok"
        # (the keep_alive call follows the answer: the client may see the answer first)
        wait_for(lambda: ollama.keep_alive.get("qwen2.5vl:7b") == FOREVER, what="the vision model kept forever")
        wait_for(lambda: ollama.keep_alive.get("llama3.1:8b") == 600, what="the chat model kept 10m")
        # a route without keep_alive is left to OLLAMA_KEEP_ALIVE, and gets no extra call
        assert ollama.keep_alive["phi4:14b"] == 300 and _generate_calls(ollama, "phi4:14b") == []
        # what went over the wire: the inventory's "-1" as the number Ollama takes, "10m" as a duration string
        assert _generate_calls(ollama, "qwen2.5vl:7b") == [{"model": "qwen2.5vl:7b", "keep_alive": -1,
                                                            "stream": False}]
        assert _generate_calls(ollama, "llama3.1:8b") == [{"model": "llama3.1:8b", "keep_alive": "10m",
                                                           "stream": False}]
        # the engine dropped the model (an eviction, a restart): the next chat loads it with the 5m default, and the
        # router sets it back
        ollama.running.pop("llama3.1:8b")
        ollama.keep_alive.pop("llama3.1:8b")
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "again"}],
                                       extra_headers={"x-homelab-route": "chat"})
        wait_for(lambda: len(_generate_calls(ollama, "llama3.1:8b")) == 2, what="keep_alive set again")
        assert ollama.keep_alive["llama3.1:8b"] == 600
        # a failed answer (unknown model on the engine) is not followed by a keep_alive call
        wait_for(lambda: len(_generate_calls(ollama, "llama3.1:8b")) == 2, what="keep_alive set again")
        n = len(ollama.calls)
        ollama.installed.pop("phi4:14b")
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "x"}],
                                           extra_headers={"x-homelab-route": "plain"})
        r_calls = lambda: [c[1] for c in ollama.calls[n:]]   # noqa: E731
        wait_for(lambda: r_calls(), what="the chat reached the engine")
        time.sleep(0.3)
        assert r_calls() == ["/v1/chat/completions"]
    finally:
        r.stop()


def test_keep_alive_zero_unloads_after_each_answer(engines, tmp_path, ollama):
    r = _router(engines, tmp_path, ollama, chat="0")
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        resp = c.post("/v1/chat/completions", headers={"x-homelab-route": "chat"},
                      json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 200, resp.text
        wait_for(lambda: "llama3.1:8b" not in ollama.running, what="unloaded after the answer")
        assert _generate_calls(ollama, "llama3.1:8b") == [{"model": "llama3.1:8b", "keep_alive": 0, "stream": False}]
    finally:
        r.stop()


def test_catalog_loads_send_the_models_keep_alive(engines, tmp_path, ollama):
    r = _router(engines, tmp_path, ollama, catalog=True, chat="1h30m", **{"eyes-o": "0"})
    try:
        c = httpx.Client(base_url=r.url, timeout=30)
        for model in ("llama3.1:8b", "phi4:14b", "qwen2.5vl:7b"):
            resp = c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]})
            assert resp.status_code == 200, resp.text
        loads = {m: _generate_calls(ollama, m)[0] for m in ("llama3.1:8b", "phi4:14b", "qwen2.5vl:7b")}
        assert loads["llama3.1:8b"]["keep_alive"] == "1h30m"
        assert loads["phi4:14b"]["keep_alive"] == -1          # no keep_alive: the catalog unloads it itself
        assert "keep_alive" not in loads["qwen2.5vl:7b"]      # 0 on a load would be Ollama's "unload"
        wait_for(lambda: "qwen2.5vl:7b" not in ollama.running, what="the keep_alive 0 model unloaded")
        assert ollama.keep_alive["llama3.1:8b"] == 5400 and ollama.keep_alive["phi4:14b"] == FOREVER
        assert "qwen2.5vl:7b" not in ollama.running           # keep_alive 0: unloaded once answered
    finally:
        r.stop()


def test_a_refused_keep_alive_leaves_the_answer_alone_and_is_logged(engines, tmp_path, ollama):
    r = _router(engines, tmp_path, ollama, chat="10m")
    try:
        ollama.generate_error = (500, "llama runner process has terminated")
        c = httpx.Client(base_url=r.url, timeout=30)
        resp = c.post("/v1/chat/completions", headers={"x-homelab-route": "chat"},
                      json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "ok"
        def logged():
            return [x for x in read_log(r, "upstream-failures.jsonl") if x.get("kind") == "keep_alive"]
        wait_for(logged, what="the failure logged")
        rec = logged()[0]
        assert rec["route"] == "chat" and rec["model"] == "llama3.1:8b" and "500" in rec["error"]
        # the model stays with the server default until a later answer sets it
        assert ollama.keep_alive["llama3.1:8b"] == 300
    finally:
        r.stop()


@pytest.mark.parametrize("value", ["forever", "10", "-1x", "1d", "", " 5m", True, 1.5, [1], {"s": 1}])
def test_ollama_double_refuses_what_ollama_refuses(ollama, value):
    # (whole-number strings: Go's ParseDuration wants a unit; the router sends those as numbers)
    resp = httpx.post(ollama.url + "/api/generate", json={"model": "llama3.1:8b", "keep_alive": value})
    if isinstance(value, float):          # a JSON number of seconds, fractions included, is fine for Ollama
        assert resp.status_code == 200
        return
    assert resp.status_code == 400 and resp.json()["error"], resp.text
    assert "llama3.1:8b" not in ollama.running


@pytest.mark.parametrize("value,secs", [(300, 300), (-1, FOREVER), ("-1m", FOREVER), ("1h30m", 5400),
                                        ("1.5h", 5400), ("0", 0), ("250ms", 0.25), (".5m", 30)])
def test_ollama_double_reads_durations_as_ollama(value, secs):
    assert ollama_keep_alive(value) == pytest.approx(secs)


def test_router_schema_takes_what_ollama_takes():
    ok = ["10m", "1h30m", "-1", -1, 0, "0", 300, "250ms", ".5h", "-1m"]
    bad = ["forever", "1d", "", "5 m", True, 1.5, [5]]
    for v in ok:
        assert durations.check(v) == v
        api = durations.api_value(v)
        assert ollama_keep_alive(api) is not None        # whatever the router sends, the double (Ollama) takes
        if isinstance(v, str) and v.lstrip("-").isdigit():
            assert isinstance(api, int)
    for v in bad:
        with pytest.raises(ValueError):
            durations.check(v)
    errs = validate_dict({"routes": {"o": {"url": "http://127.0.0.1:11434/v1", "model": "m", "keep_alive": "forever"}},
                          "buckets": {"unknown": {"route": "o"}}})
    assert any(e.path == "routes.o.keep_alive" for e in errs), errs
    assert go_duration("1h") == 3600
