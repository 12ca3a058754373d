"""AccessController without HTTP: keys, whitelists, rpm, budgets, ledger, metrics, CLI."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import yaml

from router_app.access.controller import AccessController, resolve_models
from router_app.access.config import settings_from
from router_app.access.protocol import ApiError
from router_app.decision.config import parse_dict
from router_app.access.store import Store

from access_helpers import BASE, make_cfg  # noqa: E402


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


def ctl(cfg, **kw):
    return AccessController.from_config(cfg, poll_s=0.05, **kw)


def test_modes(tmp_path):
    c = ctl(make_cfg(tmp_path))
    assert not c.enforced and c.authenticate(None, "127.0.0.1") is None  # auto, no key yet
    c.store.create_key("bot")
    c._reload_keys()
    assert c.enforced
    with pytest.raises(ApiError) as e:
        c.authenticate(None, "127.0.0.1")
    assert e.value.status == 401 and e.value.body()["error"]["code"] == "missing_api_key"
    c.store.revoke("bot")
    c._reload_keys()
    assert c.enforced  # revoking the last key never reopens the gateway
    c.close()
    c = ctl(make_cfg(tmp_path, auth="off"))
    assert c.authenticate("Bearer nonsense", "x") is None
    c.close()


def test_required_mode_with_empty_store(tmp_path):
    c = ctl(make_cfg(tmp_path, auth="required"))
    with pytest.raises(ApiError) as e:
        c.authenticate("Bearer hlr_abc_def", "127.0.0.1")
    assert e.value.status == 401
    c.close()


def test_authenticate_paths(cfg):
    c = ctl(cfg)
    rec, secret = c.store.create_key("bot", routes=["mouth"])
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "127.0.0.1")
    assert p.app == "bot" and p.allowed_routes == frozenset({"mouth"})
    assert c.authenticate(f"bearer   {secret}", "x").app == "bot"
    for bad in ("Basic abc", "Bearer", "Bearer hlr_nope_x", f"Bearer {secret}x", secret):
        with pytest.raises(ApiError) as e:
            c.authenticate(bad, "x")
        assert e.value.status == 401 and "WWW-Authenticate" in e.value.headers
    c.store.rotate("bot")
    c._reload_keys()
    with pytest.raises(ApiError) as e:
        c.authenticate(f"Bearer {secret}", "x")
    assert e.value.code == "revoked_api_key"
    c.close()


def test_cli_change_picked_up_by_running_controller(cfg):
    c = ctl(cfg)
    other = Store(c.store.path)
    _, secret = other.create_key("late")
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            if c.authenticate(f"Bearer {secret}", "x"):
                break
        except ApiError:
            pass
        time.sleep(0.02)
    assert c.authenticate(f"Bearer {secret}", "x").app == "late"
    other.revoke("late")
    deadline = time.time() + 5
    revoked = False
    while time.time() < deadline and not revoked:
        try:
            c.authenticate(f"Bearer {secret}", "x")
        except ApiError as e:
            revoked = e.code == "revoked_api_key"
        time.sleep(0.02)
    assert revoked
    c.close()


def test_models_resolution_and_pins(cfg):
    routes, unknown = resolve_models(["homelab/chat", "vl-7b", "brain", "homelab/general_chat", "zzz"], cfg)
    assert routes == {"mouth", "eyes", "brain"} and unknown == ["zzz"]
    assert resolve_models(["homelab/auto"], cfg)[0] == {"eyes", "mouth", "brain"}
    c = ctl(cfg)
    _, secret = c.store.create_key("cam", models=["homelab/vision"])
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "x")
    assert c.allowed_routes(p) == frozenset({"eyes"})
    c.check_pin(p, "eyes")
    with pytest.raises(ApiError) as e:
        c.check_pin(p, "brain")
    assert e.value.status == 403 and "eyes" in e.value.message
    c.close()


def test_rpm_limit_and_retry_after(cfg):
    c = ctl(cfg)
    _, secret = c.store.create_key("bot", rpm=3)
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "x")
    for _ in range(3):
        t = c.admit(p, "mouth", 10)
        c.settle(t, {"prompt_tokens": 1, "completion_tokens": 1}, route="mouth", bucket="b",
                 status=200, latency_ms=1)
    with pytest.raises(ApiError) as e:
        c.admit(p, "mouth", 10)
    assert e.value.status == 429 and e.value.code == "rate_limit_exceeded"
    assert 1 <= int(e.value.headers["Retry-After"]) <= 60
    c.close()


def test_budget_reserve_then_settle(cfg):
    c = ctl(cfg, clock=lambda: 1_700_000_000.0)
    _, secret = c.store.create_key("bot", tokens_per_day=1000)
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "x")
    t1 = c.admit(p, "mouth", 100, max_tokens=300)   # reserves 400
    t2 = c.admit(p, "mouth", 100, max_tokens=300)   # reserves 400 -> 800
    with pytest.raises(ApiError) as e:              # 800 + 400 > 1000
        c.admit(p, "mouth", 100, max_tokens=300)
    assert e.value.status == 429 and e.value.code == "budget_exceeded_day"
    assert "reserved" in e.value.message and "2023-11-15T00:00:00Z" in e.value.message
    c.settle(t1, {"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100},
             route="mouth", bucket="b", status=200, latency_ms=1)
    c.release(t1)  # no double give-back
    t3 = c.admit(p, "mouth", 100, max_tokens=300)   # 100 spent + 400 + 400 = 900
    c.release(t2)  # never settled: 499, prompt estimate counted
    c.settle(t3, {"prompt_tokens": 700, "completion_tokens": 150}, route="mouth", bucket="b",
             status=200, latency_ms=1)
    # spent = 100 + 100 + 850 = 1050 > 1000: exhausted, names the budget and its reset
    with pytest.raises(ApiError) as e:
        c.admit(p, "mouth", 1, max_tokens=1)
    assert e.value.code == "budget_exceeded_day" and "used up" in e.value.message
    assert int(e.value.headers["Retry-After"]) > 0
    assert e.value.headers["x-homelab-budget-reset"] == "2023-11-15T00:00:00Z"
    assert c.flush()
    assert c.store.spent(1_700_000_000.0)["bot"] == (1050, 1050)
    statuses = sorted(r[0] for r in c.store.conn.execute("SELECT status FROM usage"))
    assert statuses == [200, 200, 499]
    c.close()


def test_lone_request_may_start_with_budget_left(cfg):
    c = ctl(cfg)
    _, secret = c.store.create_key("bot", tokens_per_month=100)
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "x")
    t = c.admit(p, "mouth", 10)  # needs 10 + 1024 default, but nothing in flight and budget left
    with pytest.raises(ApiError) as e:  # a second one must wait
        c.admit(p, "mouth", 10)
    assert e.value.code == "budget_exceeded_month"
    c.settle(t, {"prompt_tokens": 10, "completion_tokens": 20}, route="mouth", bucket="b",
             status=200, latency_ms=1)
    c.close()


def test_budget_survives_restart(cfg):
    c = ctl(cfg)
    _, secret = c.store.create_key("bot", tokens_per_day=50)
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "x")
    t = c.admit(p, "mouth", 5, max_tokens=5)
    c.settle(t, {"prompt_tokens": 30, "completion_tokens": 20}, route="mouth", bucket="b",
             status=200, latency_ms=3)
    c.close()
    c2 = ctl(cfg)
    p = c2.authenticate(f"Bearer {secret}", "x")
    with pytest.raises(ApiError) as e:
        c2.admit(p, "mouth", 1, max_tokens=1)
    assert e.value.code == "budget_exceeded_day"
    c2.close()


def test_settle_future_resolves_after_commit(cfg):
    c = ctl(cfg)
    _, secret = c.store.create_key("bot")
    c._reload_keys()

    async def go():
        p = c.authenticate(f"Bearer {secret}", "x")
        t0 = c.admit(p, "mouth", 3)      # two in flight: the second settle goes through the writer
        t = c.admit(p, "mouth", 3)
        fut = c.settle(t, {"prompt_tokens": 3, "completion_tokens": 4}, route="mouth",
                       bucket="b", status=200, latency_ms=2)
        await asyncio.wait_for(fut, 5)
        row = c.store.conn.execute("SELECT total_tokens, status FROM usage WHERE request_id=?",
                                   (t.request_id,)).fetchone()
        assert row == (7, 200)
        # the last one in flight: committed inline when the writer is idle, else through it
        f0 = c.settle(t0, {"total_tokens": 5}, route="mouth", bucket="b", status=200, latency_ms=1)
        if f0 is not None:
            await asyncio.wait_for(f0, 5)
        return t0.request_id

    rid = asyncio.run(go())
    row = c.store.conn.execute("SELECT total_tokens, status FROM usage WHERE request_id=?", (rid,)).fetchone()
    assert row == (5, 200)
    c.close()


def test_audit_log_and_prompts(tmp_path):
    for log_prompts in (False, True):
        d = tmp_path / str(log_prompts)
        d.mkdir()
        cfg = make_cfg(d, log_prompts=log_prompts)
        c = ctl(cfg)
        _, secret = c.store.create_key("bot")
        c._reload_keys()
        p = c.authenticate(f"Bearer {secret}", "x")
        body = {"messages": [{"role": "user", "content": "secret sauce recipe"}]}
        t = c.admit(p, "mouth", 5, body=body)
        c.settle(t, {"prompt_tokens": 5, "completion_tokens": 1}, route="mouth", bucket="general_chat",
                 status=200, latency_ms=4.2)
        with pytest.raises(ApiError) as e:
            c.authenticate("Bearer wrong", "x")
        c.observe(None, None, route=None, bucket=None, status=e.value.status, latency_ms=0.1,
                  code=e.value.code)
        assert c.flush()
        c.close()
        lines = [json.loads(x) for x in (d / "logs" / "audit.jsonl").read_text().splitlines()]
        ok = [x for x in lines if x["status"] == 200][0]
        assert ok["app"] == "bot" and ok["route"] == "mouth" and ok["bucket"] == "general_chat"
        assert ok["tokens"]["total"] == 6 and ok["latency_ms"] == 4.2 and "time" in ok
        assert any(x["status"] == 401 for x in lines)
        assert ("prompt" in ok) is log_prompts
        assert ("secret sauce" in (d / "logs" / "audit.jsonl").read_text()) is log_prompts


def test_metrics_and_keys_report(tmp_path):
    cfg = make_cfg(tmp_path, prices={"mouth": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}})
    c = ctl(cfg)
    _, secret = c.store.create_key("bot", tokens_per_day=10000, rpm=100)
    c._reload_keys()
    p = c.authenticate(f"Bearer {secret}", "x")
    t = c.admit(p, "mouth", 5)
    c.settle(t, {"prompt_tokens": 1000, "completion_tokens": 500}, route="mouth", bucket="b",
             status=200, latency_ms=1)
    text = c.render_metrics()
    assert 'homelab_app_requests_total{app="bot",route="mouth"} 1' in text
    assert 'homelab_app_budget_remaining_tokens_day{app="bot"} 8500' in text
    assert 'homelab_app_cost_equivalent_usd_total{app="bot",route="mouth"} 0.002000' in text
    for line in text.splitlines():
        if "{" in line:
            labels = line[line.index("{") + 1:line.index("}")]
            assert {kv.split("=")[0] for kv in labels.split(",")} <= {"app", "route"}
    rep = c.keys_report()
    assert rep[0]["app"] == "bot" and rep[0]["budget_left"]["day"] == 8500
    assert secret not in json.dumps(rep)
    c.close()


def test_config_validation(tmp_path):
    from router_app.decision.config import validate_dict
    bad = dict(BASE, auth="sometimes", audit_log={"max_bytes": 10}, prices={"nope": {"input_per_mtok": 1}},
               structured={"escalate_to": "nowhere"})
    paths = {e.path for e in validate_dict(bad)}
    assert {"auth", "audit_log.max_bytes"} <= paths
    paths = {e.path for e in validate_dict(dict(BASE, prices={"nope": {"input_per_mtok": 1}},
                                                structured={"escalate_to": "nowhere"}))}
    assert paths == {"prices.nope", "structured.escalate_to"}
    cfg = make_cfg(tmp_path, auth="required", audit_log={"max_bytes": 2048, "keep": 1},
                   structured={"escalate_to": "brain", "envelope": {"action": "escalate"}})
    s = settings_from(cfg)
    assert s.auth == "required" and s.audit_log.keep == 1 and s.structured.escalate_to == "brain"
