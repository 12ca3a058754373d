"""The control plane end to end on loopback: a real router process (hub on) and real homelab-agent processes."""
from __future__ import annotations

import time

import httpx


def _recover_calls(rig) -> list:
    return rig.recover_log.read_text().splitlines() if rig.recover_log.exists() else []


def test_agent_heartbeat_fills_the_registry(rig):
    rig.start_agent("gpu-a")
    n = rig.wait(lambda: (x := rig.node("gpu-a"))["state"] == "healthy" and x, what="gpu-a healthy")
    assert n["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"
    assert n["gpus"][0]["memory_used_mib"] == 20100 and n["gpus"][0]["power_w"] == 301.5
    assert n["memory"]["total_bytes"] > 0 and n["disk"][0]["path"] == "/"
    assert n["engines"][0]["route"] == "eyes" and "eyes" in n["routes"]
    assert rig.node("gpu-b")["state"] == "unknown"
    metrics = httpx.get(rig.url + "/metrics").text
    assert 'homelab_hub_node_up{node="gpu-a"} 1' in metrics
    assert 'homelab_hub_gpu_memory_used_mib{node="gpu-a",gpu="0"} 20100' in metrics


def test_recover_cuda_by_route_runs_the_runbook_once(rig):
    rig.start_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="gpu-a healthy")
    r = rig.admin.post("/admin/recover-cuda", json={"route": "eyes"})
    assert r.status_code == 202, r.text
    cmd = r.json()
    assert cmd["node"] == "gpu-a" and cmd["kind"] == "recover_cuda" and cmd["requested_by"].startswith("admin-key@")
    done = rig.wait(lambda: (c := rig.command(cmd["id"]))["status"] in ("succeeded", "failed") and c, timeout=90,
                    what="recover_cuda result")
    assert done["status"] == "succeeded", done
    assert done["result"]["runner_status"] == "successful"
    assert _recover_calls(rig) == [f"hub command {cmd['id']}"]
    kinds = [e["kind"] for e in rig.events(node="gpu-a")]
    for k in ("recovery_requested", "command_queued", "command_delivered", "command_succeeded", "recovery_succeeded"):
        assert k in kinds, kinds
    assert kinds.index("recovery_requested") < kinds.index("recovery_succeeded")
    # a result cannot be reported twice
    again = httpx.post(rig.url + "/hub/agent/result", headers={"Authorization": f"Bearer {rig.tokens['gpu-a']}"},
                       json={"node": "gpu-a", "id": cmd["id"], "status": "failed"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "command_closed"
    assert "homelab_hub_command_delivery_seconds_p95" in httpx.get(rig.url + "/metrics").text
    time.sleep(2.5)     # more heartbeats: still exactly one run
    assert len(_recover_calls(rig)) == 1


def test_closed_list_and_bad_arguments_are_refused(rig):
    bad = [({"kind": "shell", "node": "gpu-a", "args": {"cmd": "rm -rf /"}}, "kind"),
           ({"kind": "restart_engine", "node": "gpu-a", "args": {}}, "args.engine"),
           ({"kind": "restart_engine", "node": "gpu-a", "args": {"engine": "x; reboot"}}, "args.engine"),
           ({"kind": "restart_engine", "node": "gpu-a", "args": {"engine": "e", "cmd": "ls"}}, "args.cmd"),
           ({"kind": "converge_node", "node": "gpu-a", "args": {"check": "yes"}}, "args.check"),
           ({"kind": "recover_cuda", "node": "nope"}, "node"),
           ({"kind": "recover_cuda", "node": "gpu-a", "ttl_s": -1}, "ttl_s"),
           ({"kind": "recover_cuda", "node": "gpu-a", "shell": "x"}, "shell")]
    for body, param in bad:
        r = rig.admin.post("/admin/commands", json=body)
        assert r.status_code in (400, 404), (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())
    assert rig.admin.post("/admin/recover-cuda", json={"route": "hands"}).status_code == 404
    assert rig.admin.post("/admin/recover-cuda", json={}).status_code == 400
    assert rig.admin.get("/admin/commands").json()["commands"] == []
    assert any(e["kind"] == "command_refused" for e in rig.events())
    # the agent refuses an engine it does not run, without running anything
    rig.start_agent("gpu-a")
    cid = rig.admin.post("/admin/commands", json={"kind": "restart_engine", "node": "gpu-a",
                                                  "args": {"engine": "not-mine"}}).json()["id"]
    c = rig.wait(lambda: (c := rig.command(cid))["status"] not in ("queued", "delivered") and c, what="refusal")
    assert c["status"] == "refused" and "not one of this node's engines" in c["result"]["summary"]


def test_auth(rig):
    assert httpx.get(rig.url + "/admin/nodes").status_code == 401
    assert httpx.post(rig.url + "/admin/recover-cuda", json={"node": "gpu-a"}).status_code == 401
    hb = {"node": "gpu-a"}
    assert httpx.post(rig.url + "/hub/agent/heartbeat", json=hb).status_code == 401
    wrong = httpx.post(rig.url + "/hub/agent/heartbeat", json=hb, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_agent_token"
    other = httpx.post(rig.url + "/hub/agent/heartbeat", json={"node": "gpu-b"},
                       headers={"Authorization": f"Bearer {rig.tokens['gpu-a']}"})     # a's token for b
    assert other.status_code == 401
    ok = httpx.post(rig.url + "/hub/agent/heartbeat", json=hb,
                    headers={"Authorization": f"Bearer {rig.tokens['gpu-a']}"})
    assert ok.status_code == 200 and ok.json()["commands"] == []


def test_drain_through_the_queue_and_events(rig):
    r = rig.admin.post("/admin/commands", json={"kind": "drain_route", "args": {"route": "hands"}})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    assert rig.admin.get("/admin/upstreams").json()["routes"]["hands"]["drained"] is True
    bad = rig.admin.post("/admin/commands", json={"kind": "drain_route", "args": {"route": "ghost"}}).json()
    assert bad["status"] == "failed" and "unknown route" in bad["result"]["detail"]
    kinds = [e["kind"] for e in rig.events()]
    assert "drain" in kinds and "command_succeeded" in kinds and "hub_start" in kinds
    # health transitions land in the same table: the startup probe finds the engines down (nothing listens)
    assert {e["route"] for e in rig.events(kind="route_down")} >= {"eyes", "hands", "brain", "mouth"}


def test_offline_node_waits_then_expires(rig):
    r = rig.admin.post("/admin/recover-cuda", json={"node": "gpu-b", "ttl_s": 1.5})
    c = r.json()
    assert c["status"] == "queued" and c["detail"].startswith("waiting: node offline")
    cid = c["id"]
    c = rig.wait(lambda: (x := rig.command(cid))["status"] == "expired" and x, what="expiry")
    assert any(e["kind"] == "command_expired" and e["command"] == c["id"] for e in rig.events(node="gpu-b"))
    rig.start_agent("gpu-b")
    rig.wait(lambda: rig.node("gpu-b")["state"] == "healthy", what="gpu-b healthy")
    time.sleep(1.5)
    assert rig.command(c["id"])["status"] == "expired" and _recover_calls(rig) == []


def test_stale_node_then_back(rig):
    rig.start_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="healthy")
    rig.stop_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "stale", timeout=15, what="stale")
    assert any(e["kind"] == "node_stale" for e in rig.events(node="gpu-a"))
    assert 'homelab_hub_node_up{node="gpu-a"} 0' in httpx.get(rig.url + "/metrics").text
    rig.start_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="back")
    assert any(e["kind"] == "node_up" and e.get("was") == "stale" for e in rig.events(node="gpu-a"))


def test_hub_restart_keeps_the_queue_and_runs_nothing_twice(rig):
    rig.start_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="healthy")
    first = rig.admin.post("/admin/recover-cuda", json={"node": "gpu-a"}).json()
    rig.wait(lambda: rig.command(first["id"])["status"] == "succeeded", timeout=90, what="first run")
    rig.stop_agent("gpu-a")
    queued = rig.admin.post("/admin/recover-cuda", json={"node": "gpu-a"}).json()
    rig.stop_router()                            # hub down: the agent backs off (it is restarted below too)
    rig.start_agent("gpu-a")
    time.sleep(2)
    rig.start_router()
    assert rig.command(queued["id"])["status"] in ("queued", "delivered", "running", "succeeded")
    assert rig.command(first["id"])["status"] == "succeeded"          # the audit trail survived
    rig.wait(lambda: rig.command(queued["id"])["status"] == "succeeded", timeout=120, what="queued run after restart")
    rig.stop_router()
    rig.start_router()
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="agent resynced after the second restart")
    time.sleep(2)
    assert _recover_calls(rig) == [f"hub command {first['id']}", f"hub command {queued['id']}"]


def test_cli(rig):
    import json
    import subprocess
    import sys

    from hub_rig import ADMIN_KEY, ROOT, env

    def cli(*a):
        e = dict(env(), HOMELAB_ROUTER_ADMIN_KEY=ADMIN_KEY)
        return subprocess.run([sys.executable, "-m", "router_app", *a, "--url", rig.url], cwd=ROOT, env=e,
                              capture_output=True, text=True, timeout=60)

    r = cli("recover-cuda", "--node", "gpu-b", "--json")
    assert r.returncode == 0, r.stderr
    cid = json.loads(r.stdout)["id"]
    out = cli("nodes").stdout
    assert "gpu-a" in out and "unknown" in out
    assert cid in cli("commands").stdout and "queued" in cli("commands", "--id", cid).stdout
    assert "recovery_requested" in cli("events", "--node", "gpu-b").stdout
    bad = cli("commands", "--kind", "format_disk", "--node", "gpu-b")
    assert bad.returncode == 1 and "unknown command 'format_disk'" in bad.stderr
    assert cli("recover-cuda").returncode == 2
    noauth = subprocess.run([sys.executable, "-m", "router_app", "nodes", "--url", rig.url], cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=60)
    assert noauth.returncode == 1 and "HTTP 401" in noauth.stderr
