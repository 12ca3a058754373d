"""The store and the closed command list without HTTP: at most once, expiry, redelivery, restart."""
from __future__ import annotations

import time

import pytest

from router_app.hub import commands as cmds
from router_app.hub.store import HubStore


def _cmd(cid, node="n1", ttl=60.0, kind="recover_cuda"):
    now = time.time()
    return {"id": cid, "kind": kind, "node": node, "args": {}, "status": "queued", "requested_by": "t",
            "created_at": now, "expires_at": now + ttl}


def test_closed_list():
    assert cmds.validate("restart_engine", {"engine": "vllm-eyes"}) == {"engine": "vllm-eyes"}
    assert cmds.validate("converge_node", None) == {}
    for kind, args, param in [("rm", {}, "kind"), (None, {}, "kind"), ("recover_cuda", {"x": 1}, "args.x"),
                              ("recover_cuda", [], "args"), ("restart_engine", {"engine": 3}, "args.engine"),
                              ("restart_engine", {"engine": "$(reboot)"}, "args.engine"),
                              ("drain_route", {}, "args.route"), ("converge_node", {"check": 1}, "args.check")]:
        with pytest.raises(cmds.CommandRefused) as exc:
            cmds.validate(kind, args)
        assert exc.value.param == param


def test_delivered_once_and_survives_reopen(tmp_path):
    path = str(tmp_path / "hub.sqlite3")
    s = HubStore(path)
    s.add_command(_cmd("a"))
    s.add_command(_cmd("b", node="n2"))
    assert [c["id"] for c in s.take_for_node("n1", time.time())] == ["a"]
    assert s.take_for_node("n1", time.time()) == []
    s.close()
    s = HubStore(path)                                  # a restart: the queue is as it was
    assert s.get_command("a")["status"] == "delivered" and s.get_command("b")["status"] == "queued"
    assert s.take_for_node("n1", time.time()) == []
    assert s.ack("a", "n1", time.time()) and not s.ack("a", "n1", time.time()) and not s.ack("b", "n1", time.time())
    assert s.finish("a", "succeeded", {"rc": 0}, time.time())["status"] == "succeeded"
    assert s.finish("a", "failed", {}, time.time()) is None        # closed: no second outcome
    assert s.finish("b", "succeeded", {}, time.time(), from_status=("delivered", "running"), node="n1") is None


def test_unacknowledged_is_requeued_and_expiry(tmp_path):
    s = HubStore(str(tmp_path / "hub.sqlite3"))
    s.add_command(_cmd("a"))
    s.add_command(_cmd("x", ttl=0.01))
    t = time.time()
    s.take_for_node("n1", t)
    assert s.requeue_unacked(t + 1, 10) == []
    assert [r[0] for r in s.requeue_unacked(t + 11, 10)] == ["a"]
    assert s.get_command("a")["status"] == "queued" and "redelivery" in s.get_command("a")["detail"]
    s.take_for_node("n1", t + 12)
    s.ack("a", "n1", t + 12)
    assert s.requeue_unacked(t + 100, 10) == []                 # running: never handed out again
    out = {r[0]: r[3] for r in s.expire(t + 1000)}
    assert out == {"a": "running", "x": "delivered"}
    assert s.get_command("a")["status"] == "lost"


def test_offline_queued_expires(tmp_path):
    s = HubStore(str(tmp_path / "hub.sqlite3"))
    s.add_command(_cmd("q", ttl=0.5))
    assert s.expire(time.time()) == []
    assert [r[0] for r in s.expire(time.time() + 1)] == ["q"]
    assert s.get_command("q")["status"] == "expired"
    assert s.take_for_node("n1", time.time() + 2) == []


def test_events_filter_and_trim(tmp_path):
    s = HubStore(str(tmp_path / "hub.sqlite3"))
    for i in range(10):
        s.add_event(time.time(), "route_down" if i % 2 else "route_up", None, "eyes", {"i": i})
    downs = s.events(kind="route_down")
    assert [e["i"] for e in downs] == [1, 3, 5, 7, 9] and downs[0]["route"] == "eyes"
    s.trim_events(3)
    assert [e["i"] for e in s.events()] == [7, 8, 9]


def test_agent_filters(tmp_path):
    import hashlib
    import importlib.util
    import os
    import stat

    from hub_rig import ROOT
    spec = importlib.util.spec_from_file_location("homelab_agents", ROOT / "plugins" / "filter" / "homelab_agents.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = tmp_path / "tokens"
    t1 = mod.homelab_agent_token("gpu-a", str(d))
    assert len(t1) >= 40 and mod.homelab_agent_token("gpu-a", str(d)) == t1          # made once, then read
    assert stat.S_IMODE(os.stat(d / "gpu-a.token").st_mode) == 0o600 and stat.S_IMODE(os.stat(d).st_mode) == 0o700
    with pytest.raises(ValueError):
        mod.homelab_agent_token("../etc", str(d))
    hv = {"gpu-a": {"engines": [{"route": "eyes", "runtime": "vllm", "port": 8000},
                                {"route": "mini", "runtime": "ollama", "port": 11434}]}}
    entries = mod.homelab_agent_hub_entries(["gpu-a"], hv, str(d))
    assert entries == {"gpu-a": {"token_sha256": hashlib.sha256(t1.encode()).hexdigest(), "routes": ["eyes", "mini"]}}
    assert mod.homelab_agent_engines(hv["gpu-a"]["engines"], "10.0.0.5") == [
        {"name": "vllm-eyes", "unit": "vllm-eyes.service", "route": "eyes", "health_url": "http://10.0.0.5:8000/health"},
        {"name": "ollama", "unit": "ollama.service", "route": "mini", "health_url": "http://10.0.0.5:11434/api/version"}]


def test_hub_section_is_validated():
    from router_app.decision.config import validate_dict
    import yaml

    from hub_rig import EXAMPLE
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["hub"] = {"enabled": True, "agents": {"gpu-a": {"token_sha256": "abc", "routes": ["ghost"]}}, "nope": 1}
    errs = {e.path: e.message for e in validate_dict(cfg)}
    assert "hub.agents.gpu-a.token_sha256" in errs and "hub.nope" in errs
    cfg["hub"] = {"enabled": True, "agents": {"gpu-a": {"token_sha256": "a" * 64, "routes": ["ghost"]}}}
    assert {e.path for e in validate_dict(cfg)} == {"hub.agents.gpu-a.routes[0]"}


def test_hub_off_answers_503(tmp_path):
    import asyncio

    import httpx
    import yaml

    from hub_rig import EXAMPLE
    from router_app.decision.config import parse_dict
    from router_app.v1.app import create_app
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(admin_key_env=None, log_dir=str(tmp_path / "logs"), store_path=str(tmp_path / "a.db"))
    cfg, errs = parse_dict(raw)
    assert not errs
    app = create_app(config=cfg)
    assert app.hub is None

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/admin/nodes"), await c.post("/hub/agent/heartbeat", json={})
    nodes, hb = asyncio.run(go())
    assert nodes.status_code == 503 and nodes.json()["error"]["code"] == "hub_disabled"
    assert hb.status_code == 404


def test_agent_refuses_outside_its_list(tmp_path):
    import importlib.util

    from hub_rig import AGENT
    spec = importlib.util.spec_from_file_location("homelab_agent_file", AGENT)
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    cfg = {"engines": [{"name": "vllm-eyes", "unit": "vllm-eyes.service"}]}
    ok = {"id": "c1", "kind": "restart_engine", "args": {"engine": "vllm-eyes"}}
    assert agent.check(ok, cfg) is None and agent.check({"kind": "recover_cuda", "args": {}}, cfg) is None
    for bad in ({"kind": "shell", "args": {"cmd": "id"}}, {"kind": "drain_route", "args": {"route": "x"}},
                {"kind": "recover_cuda", "args": {"cmd": "reboot"}}, {"kind": "recover_cuda", "args": "x"},
                {"kind": "restart_engine", "args": {"engine": "sshd"}},
                {"kind": "converge_node", "args": {"check": "rm -rf /"}}):
        assert agent.check(bad, cfg), bad
    st = agent.State(str(tmp_path / "state.json"))
    assert st.claim("c1") and not st.claim("c1")
    assert not agent.State(str(tmp_path / "state.json")).claim("c1")        # survives a restart of the agent
