"""Issue 11 items 1, 6, 9 and CORS (12), through the real router over loopback engines: structured outputs keep
tool calls and fail closed only for the camera buckets; unknown models are 404 model_not_found; keys with a
whitelist are auto-routed within it; CORS for configured origins only."""
from __future__ import annotations

import json
import pathlib
import time

import httpx
import openai
import pytest
import yaml

from conftest import EXAMPLE, MODELS, chat  # noqa: E402
from tool_engine import CALL_ARGS  # noqa: E402

from router_app.decision.config import ConfigInvalid, load_config
from router_app.access.store import Store

SCHEMA = {"type": "object", "required": ["answer"], "additionalProperties": False,
          "properties": {"answer": {"type": "string"}}}
RF = {"type": "json_schema", "json_schema": {"name": "coder_reply", "schema": SCHEMA}}
TOOLS = [{"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object"}}}]
ORIGIN = "https://chat.home.example"



def with_key(r, tmp_path, **kw) -> str:
    store = Store(str(tmp_path / "state" / "router.sqlite3"))
    try:
        _, key = store.create_key("app", **kw)
    finally:
        store.close()
    deadline = time.time() + 5
    while time.time() < deadline:
        if httpx.post(r.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
                      ).status_code == 401:
            return key
        time.sleep(0.05)
    raise AssertionError("keys not enforced")


# ------------------------------------------------------------------------------------------ item 1: structured

def test_structured_outputs_keep_tool_calls_and_fail_closed_only_for_cameras(tool_router, tool_engines):
    r = tool_router()
    with httpx.Client(base_url=r.url, timeout=10) as c:
        # a coding agent with its own schema and tools: the engine calls a tool -> passes through untouched
        x = chat(c, "fix the failing test", model="homelab/code", response_format=RF, tools=TOOLS)
        assert x.status_code == 200 and x.headers["x-homelab-structured"] == "tool_calls"
        ch = x.json()["choices"][0]
        assert ch["finish_reason"] == "tool_calls" and ch["message"]["content"] is None
        assert ch["message"]["tool_calls"][0]["function"] == {"name": "run_tests", "arguments": CALL_ARGS}
        # even on the camera route, a tool call is never replaced by the envelope
        x = chat(c, "frigate motion", model="homelab/vision", response_format=RF, tools=TOOLS)
        assert x.headers["x-homelab-structured"] == "tool_calls" and x.json()["choices"][0]["message"]["tool_calls"]
        # a non-camera client's answer that fails its schema: the engine's answer, untouched, flagged; no escalation
        tool_engines["hands"].content = "Sure! Here is the refactor."
        n_brain = len(tool_engines["brain"].requests)
        x = chat(c, "refactor this", model="homelab/code", response_format=RF)
        assert x.status_code == 200 and x.headers["x-homelab-structured"] == "invalid"
        assert x.headers["x-homelab-route"] == "hands"
        assert x.json()["choices"][0]["message"]["content"] == "Sure! Here is the refactor."
        assert "homelab_envelope" not in x.json() and len(tool_engines["brain"].requests) == n_brain
        tool_engines["hands"].content = json.dumps({"answer": "done"})
        x = chat(c, "refactor this", model="homelab/code", response_format=RF)
        assert x.headers["x-homelab-structured"] == "valid"
        # the camera bucket still fails closed: auto-routed image -> vision bucket -> escalate -> envelope
        tool_engines["eyes"].content = "not json"
        tool_engines["brain"].content = "still not json"
        x = chat(c, "classify", image=True, response_format=RF)
        assert x.headers["x-homelab-bucket"] == "vision" and x.headers["x-homelab-structured"] == "envelope"
        assert json.loads(x.json()["choices"][0]["message"]["content"])["action"] == "escalate"
    r.flush_logs()
    lines = _logdir(r).joinpath("structured-validation.jsonl").read_text().splitlines()
    outcomes = [json.loads(ln)["outcome"] for ln in lines]
    assert outcomes == ["tool_calls", "tool_calls", "invalid_passed", "valid", "envelope"]


def _logdir(r):
    return pathlib.Path(r.app.runtime.config.log_dir)


def test_fail_closed_buckets_config(tmp_path):
    base = yaml.safe_load(EXAMPLE.read_text())
    assert base["structured"]["fail_closed_buckets"] == ["vision"]
    base["structured"]["fail_closed_buckets"] = ["cameras"]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigInvalid) as ei:
        load_config(p)
    assert [e.path for e in ei.value.errors] == ["structured.fail_closed_buckets[0]"]


# ------------------------------------------------------------------------------------------ item 6: unknown models

@pytest.mark.parametrize("name", ["llama3:70b", "gpt-4o", "homelab/nonexistent"])
def test_unknown_model_is_404_like_openai(tool_router, name):
    r = tool_router()
    cl = openai.OpenAI(base_url=r.url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.NotFoundError) as ei:
        cl.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body == {"message": f"The model `{name}` does not exist", "type": "invalid_request_error",
                             "param": "model", "code": "model_not_found"}
    with pytest.raises(openai.NotFoundError):
        cl.completions.create(model=name, prompt="hi")
    with pytest.raises(openai.NotFoundError):
        cl.embeddings.create(model=name, input="hi")


def test_known_names_and_the_opt_in(tool_router):
    r = tool_router()
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for name in ("homelab/auto", "homelab/chat", "homelab/coding", "mouth", MODELS["mouth"]):
            assert chat(c, "hi", model=name).status_code == 200, name
        assert c.post("/v1/embeddings", json={"model": "homelab/fast", "input": "x"}).status_code == 200
    r2 = tool_router(route_unknown_models=True)
    with httpx.Client(base_url=r2.url, timeout=10) as c:
        x = chat(c, "please refactor this", model="gpt-4o")
        assert x.status_code == 200 and x.headers["x-homelab-route"] == "hands"


# ------------------------------------------------------------------------------------------ item 9: keys

def test_whitelisted_key_is_auto_routed_within_it(tool_router, tmp_path):
    r = tool_router()
    key = with_key(r, tmp_path, models=["homelab/chat"])
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=r.url, timeout=10) as c:
        x = chat(c, "refactor this", headers=auth)
        assert x.status_code == 200, x.text
        assert (x.headers["x-homelab-route"], x.headers["x-homelab-bucket"], x.headers["x-homelab-reason"]) == \
            ("mouth", "coding", "hands_forbidden")
        assert chat(c, "refactor this", model="homelab/code", headers=auth).status_code == 403   # pins stay 403
        assert chat(c, "x", headers={**auth, "X-Homelab-Route": "hands"}).status_code == 403
    r.flush_logs()
    recs = [json.loads(ln) for ln in _logdir(r).joinpath("router-decisions.jsonl").read_text().splitlines()]
    rec = [d for d in recs if d["status"] == 200][-1]
    assert rec["route"] == "mouth" and rec["reason"] == "hands_forbidden" and rec["skipped"] == ["hands"]


# ------------------------------------------------------------------------------------------ item 12: CORS

def test_cors_only_for_configured_origins(tool_router, tmp_path):
    r = tool_router()
    with httpx.Client(base_url=r.url, timeout=10) as c:      # not configured: no CORS at all
        x = c.options("/v1/chat/completions", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in x.headers
        x = chat(c, "hi", headers={"Origin": ORIGIN})
        assert x.status_code == 200 and "access-control-allow-origin" not in x.headers
    r = tool_router(cors={"allow_origins": [ORIGIN]})
    key = with_key(r, tmp_path)
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"}
    with httpx.Client(base_url=r.url, timeout=10) as c:
        x = c.options("/v1/chat/completions", headers=pre)          # no key: preflights carry none
        assert x.status_code == 204
        assert x.headers["access-control-allow-origin"] == ORIGIN and x.headers["vary"] == "Origin"
        assert "POST" in x.headers["access-control-allow-methods"]
        assert x.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
        assert int(x.headers["access-control-max-age"]) > 0
        x = c.options("/v1/responses", headers={**pre, "Origin": "https://evil.example"})
        assert x.status_code == 403 and "access-control-allow-origin" not in x.headers
        x = chat(c, "hi", headers={"Origin": ORIGIN, "Authorization": f"Bearer {key}"})
        assert x.status_code == 200 and x.headers["access-control-allow-origin"] == ORIGIN
        assert "x-homelab-route" in x.headers["access-control-expose-headers"]
        x = chat(c, "hi", headers={"Origin": ORIGIN})                 # errors are readable by the page too
        assert x.status_code == 401 and x.headers["access-control-allow-origin"] == ORIGIN
        x = chat(c, "hi", headers={"Origin": "https://evil.example", "Authorization": f"Bearer {key}"})
        assert x.status_code == 200 and "access-control-allow-origin" not in x.headers
        x = c.get("/v1/models", headers={"Origin": ORIGIN, "Authorization": f"Bearer {key}"})
        assert x.headers["access-control-allow-origin"] == ORIGIN


def test_cors_origins_are_validated(tmp_path):
    base = yaml.safe_load(EXAMPLE.read_text())
    base["cors"] = {"allow_origins": ["chat.home.example"]}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigInvalid) as ei:
        load_config(p)
    assert ei.value.errors[0].path.startswith("cors.allow_origins")
