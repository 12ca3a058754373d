"""Through the router against real loopback engines: routing, the fallback chain, caps, queues, drain, health."""
import concurrent.futures as cf
import os

import httpx
import pytest

from conftest import chat, wait_for

POOL = cf.ThreadPoolExecutor(8)


def bg_chat(router, text, **kw):
    def run():
        with httpx.Client(base_url=router.url, timeout=20) as c:
            return chat(c, text, **kw)
    return POOL.submit(run)


def hdr(r):
    return r.headers["x-homelab-route"], r.headers["x-homelab-bucket"], r.headers["x-homelab-reason"]


@pytest.mark.parametrize("bucket,text,route", [
    ("vision", "look at this screenshot", "eyes"),
    ("notification", "send an sms", "mouth"),
    ("fast", "classify these tags", "eyes"),
    ("general_chat", "tell me about whales", "mouth"),
    ("utility", "rewrite this paragraph", "mouth"),
    ("medium_summary", "executive summary please", "mouth"),
    ("coding", "refactor the FastAPI app", "hands"),
    ("agentic", "run a multi-step agent", "hands"),
    ("reasoning", "architecture trade-off", "brain"),
    ("unknown", "good morning", "brain"),
])
def test_bucket_table_through_the_router(client, engines, bucket, text, route):
    r = chat(client, text)
    assert r.status_code == 200
    assert hdr(r)[:2] == (route, bucket)
    assert float(r.headers["x-homelab-overhead-ms"]) >= 0
    assert r.json()["choices"][0]["message"]["content"] == f"{route} answers"
    assert engines[route].models_seen() == [engines[route].model]      # the route's model id is sent upstream


def test_size_promotion_through_the_router(client, engines):
    r = chat(client, "classify " + "word " * 8000)      # ~10K tokens of 'fast' -> hands
    assert hdr(r) == ("hands", "fast", "size_promotion")
    r = chat(client, "classify " + "word " * 20000)     # ~25K tokens -> brain
    assert hdr(r) == ("brain", "fast", "size_promotion")
    r = chat(client, "screenshot " + "word " * 20000)   # vision stays on eyes
    assert hdr(r)[0] == "eyes"


def saturate(make_router, engines, route, **route_cfg):
    def mutate(cfg):
        cfg["routes"][route].update({"max_concurrency": 1, "max_queue": 0, **route_cfg})
    router = make_router(mutate)
    engines[route].hold()
    return router


def occupy(router, engines, route, text, **kw):
    fut = bg_chat(router, text, **kw)
    wait_for(lambda: engines[route].in_flight >= 1, what=f"{route} busy")
    return fut


def test_eyes_saturated_text_spills_to_mouth_image_to_brain(make_router, engines):
    router = saturate(make_router, engines, "eyes")
    fut = occupy(router, engines, "eyes", "classify this json")
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "classify this json")
        assert r.status_code == 200 and hdr(r) == ("mouth", "fast", "eyes_saturated")
        r = chat(c, "what is this", image=True)
        assert r.status_code == 200 and hdr(r) == ("brain", "vision", "eyes_saturated")
        assert engines["mouth"].requests and all(
            isinstance(m["content"], str) for req in engines["mouth"].requests for m in req["messages"])
    engines["eyes"].release()
    assert fut.result().status_code == 200


def test_eyes_down_fails_over_to_brain_for_text_and_images(make_router, engines):
    router = make_router()
    engines["eyes"].stop()
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "classify this json")
        assert r.status_code == 200 and hdr(r) == ("brain", "fast", "eyes_down")
        r = chat(c, "a frigate motion event", image=True)
        assert r.status_code == 200 and hdr(r) == ("brain", "vision", "eyes_down")
        ups = c.get("/admin/upstreams").json()["routes"]
        assert ups["eyes"]["healthy"] is False and ups["eyes"]["last_error"]
    engines["eyes"].start()


@pytest.mark.parametrize("route,busy,text,bucket,spill_to,break_it", [
    ("hands", "implement it", "refactor the code", "coding", "mouth", "fail500"),
    ("mouth", "tell me about it", "tell me about dogs", "general_chat", "brain", "stop"),
])
def test_saturated_spills_and_down_fails_to_brain(make_router, engines, route, busy, text, bucket, spill_to,
                                                  break_it):
    router = saturate(make_router, engines, route)
    fut = occupy(router, engines, route, busy)
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, text)
        assert hdr(r) == (spill_to, bucket, f"{route}_saturated")
        engines[route].release()
        assert fut.result().status_code == 200
        if break_it == "stop":
            engines[route].stop()           # connection refused
        else:
            engines[route].mode = break_it  # a 5xx answer
        r = chat(c, text)
        assert r.status_code == 200 and hdr(r) == ("brain", bucket, f"{route}_down")


def test_mouth_three_slots_fourth_caller_goes_to_the_fallback(make_router, engines):
    router = make_router()
    engines["mouth"].hold()
    futs = [bg_chat(router, "tell me about cats") for _ in range(3)]
    wait_for(lambda: engines["mouth"].in_flight == 3, what="three mouth slots")
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "tell me about cats")
        assert hdr(r) == ("brain", "general_chat", "mouth_saturated")
        assert c.get("/admin/upstreams").json()["routes"]["mouth"]["in_flight"] == 3
    engines["mouth"].release()
    assert [f.result().headers["x-homelab-route"] for f in futs] == ["mouth"] * 3
    assert engines["mouth"].max_in_flight == 3


def test_brain_down_is_503_never_a_downgrade(make_router, engines):
    router = make_router()
    engines["brain"].stop()
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "review the architecture plan")
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "route_unavailable" and r.json()["error"]["type"] == "server_error"
        assert hdr(r) == ("brain", "reasoning", "brain_down")
        # everything down: eyes -> brain -> 503
        engines["eyes"].stop()
        r = chat(c, "a screenshot", image=True)
        assert r.status_code == 503 and r.headers["x-homelab-route"] == "brain"
    assert not any(e.requests for n, e in engines.items() if n in ("mouth", "hands"))


def test_brain_busy_with_full_queue_is_503(make_router, engines):
    router = saturate(make_router, engines, "brain", max_queue=1, queue_timeout_s=5)
    f1 = occupy(router, engines, "brain", "plan the architecture")
    f2 = bg_chat(router, "plan the architecture")
    wait_for(lambda: router.app.runtime.states["brain"].queued == 1, what="one queued")
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "plan the architecture")
        assert r.status_code == 503 and r.json()["error"]["code"] == "route_busy" and r.headers["retry-after"]
        assert hdr(r) == ("brain", "reasoning", "brain_saturated")
    engines["brain"].release()
    assert f1.result().status_code == 200 and f2.result().status_code == 200   # the queued one was served


def test_queue_timeout_then_spill(make_router, engines):
    router = saturate(make_router, engines, "hands", max_queue=2, queue_timeout_s=0.3)
    fut = occupy(router, engines, "hands", "implement it")
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "refactor the code")
        assert hdr(r) == ("mouth", "coding", "hands_saturated")
    engines["hands"].release()
    fut.result()


def test_5xx_marks_down_and_active_probe_brings_it_back(make_router, engines):
    router = make_router()
    engines["eyes"].mode = "fail500"
    with httpx.Client(base_url=router.url, timeout=10) as c:
        assert hdr(chat(c, "classify json")) == ("brain", "fast", "eyes_down")
        n = len(engines["eyes"].requests)
        engines["eyes"].mode = "ok"
        r = chat(c, "classify json")                      # still marked down: not even tried
        assert hdr(r) == ("brain", "fast", "eyes_down") and len(engines["eyes"].requests) == n
        router.probe()
        assert hdr(chat(c, "classify json")) == ("eyes", "fast", "bucket_match")
        # a failed probe marks a route down too (engine /health 503 and /v1/models 503)
        engines["hands"].mode = "health_down"
        router.probe()
        assert c.get("/admin/upstreams").json()["routes"]["hands"]["healthy"] is False
        assert hdr(chat(c, "refactor"))[0] == "brain"
    logs = os.path.join(router.app.runtime.config.log_dir, "upstream-failures.jsonl")
    router.flush_logs()
    text = open(logs).read()
    assert '"route":"eyes"' in text and '"kind":"http_5xx"' in text and "classify json" not in text


def test_engine_without_health_endpoint_is_probed_on_models(make_router, engines, tmp_path):
    from engine import Engine
    e = Engine("nohealth", "m", health=False)
    try:
        def mutate(cfg):
            cfg["routes"]["mouth"]["url"] = e.url
        router = make_router(mutate)
        router.app.runtime.states["mouth"].mark_down("test")
        router.probe()
        assert router.app.runtime.states["mouth"].healthy
    finally:
        e.close()


def test_first_byte_timeout_fails_over(make_router, engines):
    def mutate(cfg):
        cfg["routes"]["hands"]["first_byte_timeout_s"] = 0.3
    router = make_router(mutate)
    engines["hands"].mode = "hang"
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "refactor the code")
        assert r.status_code == 200 and hdr(r) == ("brain", "coding", "hands_down")


def test_4xx_passes_through_without_failover(client, engines, router):
    engines["hands"].mode = "fail400"
    r = chat(client, "refactor the code")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert hdr(r) == ("hands", "coding", "bucket_match")
    assert not engines["brain"].requests and not engines["mouth"].requests
    assert router.app.runtime.states["hands"].healthy


def test_drain_and_undrain(client, engines):
    assert client.post("/admin/drain/mouth").json() == {"route": "mouth", "drained": True}
    assert client.get("/admin/upstreams").json()["routes"]["mouth"]["drained"] is True
    assert hdr(chat(client, "tell me about owls")) == ("brain", "general_chat", "mouth_drained")
    assert hdr(chat(client, "tell me about owls", model="homelab/chat"))[0] == "mouth"           # alias pin passes
    assert hdr(chat(client, "x", headers={"X-Homelab-Route": "mouth"}))[0] == "mouth"           # header pin passes
    assert hdr(chat(client, "x", model="homelab/general_chat"))[0] == "brain"                   # bucket hint doesn't
    # spill into a drained route is skipped too: hands spills to mouth normally
    client.post("/admin/drain/eyes")
    assert hdr(chat(client, "a screenshot", image=True)) == ("brain", "vision", "eyes_drained")
    assert client.post("/admin/undrain/mouth").json()["drained"] is False
    assert hdr(chat(client, "tell me about owls"))[0] == "mouth"
    assert client.post("/admin/drain/nope").status_code == 404


def test_drained_brain_auto_traffic_is_503(client):
    client.post("/admin/drain/brain")
    r = chat(client, "plan the architecture")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert hdr(r) == ("brain", "none", "brain_drained") and r.json()["error"]["code"] == "route_drained"
    assert chat(client, "plan", model="brain").status_code == 200


def test_admin_key_required_when_configured(make_router, monkeypatch):
    monkeypatch.setenv("TEST_ROUTER_ADMIN_KEY_SET", "s3cret")

    def mutate(cfg):
        cfg["admin_key_env"] = "TEST_ROUTER_ADMIN_KEY_SET"
    router = make_router(mutate)
    with httpx.Client(base_url=router.url, timeout=10) as c:
        for method, path in (("GET", "/admin/upstreams"), ("POST", "/admin/drain/eyes"),
                             ("POST", "/admin/reload-config"), ("GET", "/admin/keys")):
            r = c.request(method, path)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            for wrong in ("Bearer wrong", "Basic czNjcmV0", "Bearer s3crét".encode()):
                r = c.request(method, path, headers={"Authorization": wrong})
                assert r.status_code == 401, (wrong, r.text)
            r = c.request(method, path, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200, r.text
        assert c.get("/healthz").status_code == 200 and c.get("/openapi.json").status_code == 200


def test_admin_without_key_is_loopback_only(router):
    from router_app.errors import ApiError
    from router_app.ops.auth import check_admin
    check_admin({"client": ("127.0.0.1", 5), "headers": []}, router.app.admin_key)
    for scope in ({"client": ("10.0.0.7", 5), "headers": []},
                  # loopback, but through a reverse proxy on the same host (Caddy): not loopback
                  {"client": ("127.0.0.1", 5), "headers": [(b"x-forwarded-for", b"192.0.2.7")]}):
        with pytest.raises(ApiError) as ei:
            check_admin(scope, router.app.admin_key)
        assert ei.value.status == 403


def test_pinned_route_still_spills_when_saturated(make_router, engines):
    router = saturate(make_router, engines, "hands")
    fut = occupy(router, engines, "hands", "implement it")
    with httpx.Client(base_url=router.url, timeout=10) as c:
        r = chat(c, "anything", model="homelab/code")
        assert r.status_code == 200 and hdr(r) == ("mouth", "pinned", "hands_saturated")
    engines["hands"].release()
    fut.result()


def test_periodic_probe_brings_a_route_back(make_router, engines):
    def mutate(cfg):
        cfg["health"] = {"interval_s": 0.2, "timeout_s": 1}
    router = make_router(mutate)
    engines["eyes"].mode = "fail500"
    with httpx.Client(base_url=router.url, timeout=10) as c:
        assert hdr(chat(c, "classify json"))[2] == "eyes_down"
        engines["eyes"].mode = "ok"
        wait_for(lambda: c.get("/admin/upstreams").json()["routes"]["eyes"]["healthy"], what="eyes back")
        assert hdr(chat(c, "classify json"))[0] == "eyes"


def test_size_promotion_table_through_the_router(client, engines):
    from test_policy import PROMOTION_TABLE
    for bucket, cols in PROMOTION_TABLE.items():
        for tokens, col in ((4000, 0), (12000, 1), (30000, 2)):
            text = "x" * (tokens * 4 - 8)
            r = chat(client, text, headers={"X-Homelab-Bucket": bucket}, image=(bucket == "vision"))
            assert r.status_code == 200
            assert (r.headers["x-homelab-bucket"], r.headers["x-homelab-route"]) == (bucket, cols[col]), (bucket,
                                                                                                          tokens)
            assert r.json()["choices"][0]["message"]["content"] == f"{cols[col]} answers"
