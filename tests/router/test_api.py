"""HTTP surface: bad input, headers, models, health, metrics, stats, logs, completions, embeddings."""
import json
import os

import httpx
import pytest

from conftest import chat
from router_app.ops.telemetry import JsonlLog

ROUTE_HEADERS = ("x-homelab-route", "x-homelab-bucket", "x-homelab-reason", "x-homelab-overhead-ms", "x-request-id")


def assert_openai_error(r, status, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code
    for h in ROUTE_HEADERS:
        assert h in r.headers


@pytest.mark.parametrize("content,code", [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b"[1, 2]", "invalid_request"),
    (b'{"model": "homelab/auto"}', "missing_messages"),
    (b'{"messages": []}', "missing_messages"),
    (b'{"messages": "hi"}', "missing_messages"),
    (b'{"messages": ["hi"]}', "invalid_messages"),
    (b'\xff\xfe garbage', "invalid_json"),
])
def test_bad_chat_bodies_are_400(client, content, code):
    r = client.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, code)


def test_other_bad_inputs(client, engines):
    assert_openai_error(client.post("/v1/completions", json={"model": "x"}), 400, "missing_prompt")
    assert_openai_error(client.post("/v1/embeddings", json={"model": "x"}), 400, "missing_input")
    r = chat(client, "hi", headers={"X-Homelab-Route": "gpu9"})
    assert_openai_error(r, 400, "unknown_route")
    assert "eyes" in r.json()["error"]["message"]
    assert_openai_error(chat(client, "hi", headers={"X-Homelab-Bucket": "nope"}), 400, "unknown_bucket")
    assert_openai_error(chat(client, "hi", metadata={"homelab_bucket": "nope"}), 400, "unknown_bucket")
    r = chat(client, "what is this", model="homelab/chat", image=True)
    assert_openai_error(r, 400, "image_to_blind_route")
    assert "eyes" in r.json()["error"]["message"] and "brain" in r.json()["error"]["message"]
    assert not any(e.requests for e in engines.values())
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_body_over_the_limit_is_413(make_router):
    def mutate(cfg):
        cfg["max_body_bytes"] = 4096
    router = make_router(mutate)
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "x" * 10000)
        assert_openai_error(r, 413, "request_too_large")
        # chunked upload without Content-Length
        body = json.dumps({"messages": [{"role": "user", "content": "y" * 10000}]}).encode()
        r = c.post("/v1/chat/completions", content=iter([body[:3000], body[3000:]]))
        assert_openai_error(r, 413, "request_too_large")
        assert chat(c, "small").status_code == 200


def test_default_body_limit_is_32_mib(router):
    assert router.app.runtime.config.max_body_bytes == 32 * 1024 * 1024


def test_route_headers_and_request_id(client):
    r = chat(client, "refactor", headers={"X-Request-Id": "abc-123"})
    for h in ROUTE_HEADERS:
        assert h in r.headers
    assert r.headers["x-request-id"] == "abc-123"


def test_models_lists_auto_aliases_and_route_models(client):
    r = client.get("/v1/models")
    ids = [m["id"] for m in r.json()["data"]]
    assert r.json()["object"] == "list"
    for mid in ("homelab/auto", "homelab/vision", "homelab/fast", "homelab/code", "homelab/agent",
                "homelab/reasoning", "homelab/review", "homelab/chat", "homelab/utility", "homelab/gemma",
                "qwen2.5-vl-7b-router-awq", "glm-4.5-air-awq", "qwen3.6-35b-a3b-fp8", "gemma-4-31b",
                "homelab/medium_summary"):
        assert mid in ids
    assert len(ids) == len(set(ids))


def test_healthz_metrics_stats(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    chat(client, "refactor")
    chat(client, "hi", headers={"X-Homelab-Route": "gpu9"})
    m = client.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    t = m.text
    assert 'homelab_router_requests_total{endpoint="chat",route="hands",bucket="coding",status="200"} 1' in t
    assert 'homelab_router_decisions_total{bucket="coding",route="hands",reason="bucket_match"} 1' in t
    assert "homelab_router_request_duration_seconds_bucket" in t and 'homelab_router_route_in_flight{route="eyes"} 0' in t
    assert 'homelab_router_tokens_total{route="hands",type="prompt"} 11' in t
    assert 'homelab_router_upstream_first_byte_seconds_count{route="hands"} 1' in t
    assert 'homelab_router_rejected_total{status="400",code="unknown_route"} 1' in t
    s = client.get("/stats").json()
    assert any(x["route"] == "hands" and x["value"] == 1 for x in s["requests"])
    assert set(s["routes"]) == {"eyes", "hands", "brain", "mouth"}


def test_decision_log_has_no_prompt_text(router, client):
    secret = "refactor the purple-elephant-7731 module"
    chat(client, secret)
    chat(client, "tell me about pizza", stream=True)
    router.flush_logs()
    path = os.path.join(router.app.runtime.config.log_dir, "router-decisions.jsonl")
    lines = [json.loads(x) for x in open(path)]
    assert "purple-elephant" not in open(path).read()
    rec = lines[0]
    assert rec["bucket"] == "coding" and rec["route"] == "hands" and rec["keywords"] == ["refactor"]
    assert rec["status"] == 200 and rec["prompt_tokens"] == 11 and rec["completion_tokens"] == 7
    assert {"ts", "id", "reason", "fallback_path", "latency_ms", "est_tokens"} <= set(rec)
    assert lines[1]["stream"] is True and lines[1]["prompt_tokens"] == 5 and lines[1]["completion_tokens"] == 3


def test_jsonl_log_rotates_by_size(tmp_path):
    log = JsonlLog(str(tmp_path / "x.jsonl"), max_bytes=1024, backups=2)
    for i in range(100):
        log.write({"i": i, "pad": "z" * 40})
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["x.jsonl", "x.jsonl.1", "x.jsonl.2"]
    assert all(os.path.getsize(tmp_path / n) <= 1024 for n in names)
    last = [json.loads(x) for x in open(tmp_path / "x.jsonl")]
    assert last[-1]["i"] == 99


def test_completions_endpoint_classifies_prompt(client, engines):
    r = client.post("/v1/completions", json={"model": "homelab/auto", "prompt": "implement a pytest fixture"})
    assert r.status_code == 200 and r.headers["x-homelab-route"] == "hands"
    assert r.json()["choices"][0]["text"] == "hands answers"


def test_embeddings_go_to_the_embeddings_route(client, engines):
    r = client.post("/v1/embeddings", json={"model": "homelab/auto", "input": ["a", "b"]})
    assert r.status_code == 200 and r.headers["x-homelab-route"] == "eyes"
    assert r.headers["x-homelab-bucket"] == "embeddings"
    assert len(r.json()["data"]) == 2
    assert engines["eyes"].requests[-1]["model"] == "qwen2.5-vl-7b-router-awq"
    r = client.post("/v1/embeddings", json={"model": "homelab/review", "input": "a"})   # brain: no embeddings
    assert r.status_code == 400 and r.json()["error"]["code"] == "embeddings_unsupported"
    assert "eyes" in r.json()["error"]["message"] and engines["brain"].requests == []


def test_unexpected_shapes_never_500(client):
    for body in ({"messages": [{"role": "user", "content": None}]},
                 {"messages": [{"role": "user", "content": [{"type": "text"}, 5, "s"]}], "metadata": "x"},
                 {"messages": [{"role": "user"}], "model": 5},
                 {"messages": [{"content": {"a": 1}}], "stream_options": 3}):
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, (body, r.text)


def test_stalled_body_gets_408_not_a_hang(router, monkeypatch):
    import socket
    monkeypatch.setattr(router.app, "body_timeout_s", 0.3)
    s = socket.create_connection(("127.0.0.1", router.port), timeout=5)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"messages\":")
        data = b""
        while b"\r\n\r\n" not in data or b"request_timeout" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 408") and b"request_timeout" in data


def test_live_decision_matches_explain(router, client, tmp_path, capsys):
    from router_app.cli import main as cli_main
    body = {"model": "homelab/auto", "messages": [
        {"role": "system", "content": "You are a reviewer."},
        {"role": "user", "content": "classify these json tags " + "w " * 40000}]}
    r = client.post("/v1/chat/completions", json=body)
    req = tmp_path / "req.json"
    req.write_text(json.dumps(body))
    assert cli_main(["explain", "--config", router.config_path, "--request", str(req), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert (r.headers["x-homelab-route"], r.headers["x-homelab-bucket"], r.headers["x-homelab-reason"]) == \
        (js["route"], js["bucket"], js["reason"]) == ("hands", "fast", "size_promotion")
