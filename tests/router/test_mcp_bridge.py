"""The MCP bridge end to end on loopback: a real router process, a real bridge process (`homelab-router mcp`), and
the official SDK's own clients (`mcp.client.streamable_http`, `mcp.client.sse`) over both transports.

Engines are the aiohttp doubles of tests/router/engine.py (no GPU engine runs here).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import anyio
import httpx
import httpx2
import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from conftest import ROOT, rig_config
from engine import free_port
from router_app.access import scopes
from router_app.access.store import Store

ADMIN_ENV = "TEST_MCP_ROUTER_ADMIN_KEY"
ADMIN_KEY = "test-admin-key-0123456789abcdef"
TRANSPORTS = ["streamable-http", "sse"]


def _wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url}")


@pytest.fixture(scope="module")
def bridge(engines, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp")
    rport, mport = free_port(), free_port()
    cfg = rig_config(engines, tmp)
    cfg["admin_key_env"] = ADMIN_ENV
    cfg["listen"] = {"host": "127.0.0.1", "port": rport}
    cfg["store_path"] = str(tmp / "router.sqlite3")
    eyes_port = int(engines["eyes"].url.rsplit(":", 1)[1].split("/")[0])
    cfg["mcp"] = {
        "listen": {"host": "127.0.0.1", "port": mport},
        "nodes": {"gpu-a": {"address": "127.0.0.1", "engines": [{"route": "eyes", "runtime": "vllm",
                                                                  "port": eyes_port}],
                            "ollama_url": "http://127.0.0.1:11434"}},
    }
    path = tmp / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    st = Store(cfg["store_path"])
    tokens = {}
    for app, sc in (("reader", ["read"]), ("ops", ["admin"]), ("plain", [])):
        _, tokens[app] = st.create_key(app)
        if sc:
            scopes.set_scopes(st.conn, app, sc)
    st.close()
    env = {**os.environ, ADMIN_ENV: ADMIN_KEY, "PYTHONPATH": str(ROOT)}
    procs = []
    try:
        router = subprocess.Popen([sys.executable, "-m", "router_app", "serve", "--config", str(path)], cwd=tmp,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(router)
        _wait_http(f"http://127.0.0.1:{rport}/healthz", router, "router")
        mcp = subprocess.Popen([sys.executable, "-m", "router_app", "mcp", "--config", str(path)], cwd=tmp,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(mcp)
        _wait_http(f"http://127.0.0.1:{mport}/healthz", mcp, "bridge")
        yield {"base": f"http://127.0.0.1:{mport}", "router": f"http://127.0.0.1:{rport}", "tokens": tokens,
               "audit": tmp / "logs" / "mcp-audit.jsonl", "config": path}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def session(bridge, transport: str, app: str):
    """Run fn(ClientSession) over one transport with app's key; returns fn's result."""
    headers = {"Authorization": f"Bearer {bridge['tokens'][app]}"}

    def runner(fn):
        async def main():
            if transport == "sse":
                async with sse_client(bridge["base"] + "/sse", headers=headers) as (r, w):
                    async with ClientSession(r, w) as s:
                        await s.initialize()
                        return await fn(s)
            async with httpx2.AsyncClient(headers=headers, timeout=30) as hc:
                async with streamable_http_client(bridge["base"] + "/mcp", http_client=hc) as (r, w):
                    async with ClientSession(r, w) as s:
                        await s.initialize()
                        return await fn(s)
        return anyio.run(main)
    return runner


def payload(res) -> dict:
    assert not res.is_error, res.content[0].text
    return json.loads(res.content[0].text)


def text(res) -> str:
    return res.content[0].text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lists_tools_with_annotations(bridge, transport):
    async def fn(s):
        return (await s.list_tools()).tools
    tools = {t.name: t for t in session(bridge, transport, "reader")(fn)}
    assert {"cluster_nodes", "model_list", "model_load", "model_unload", "node_ollama_url", "node_engine_url",
            "infra_list", "infra_read", "route_status", "drain_route", "reload_policy", "recover_cuda"} <= set(tools)
    assert tools["route_status"].annotations.read_only_hint is True
    assert tools["drain_route"].annotations.read_only_hint is False
    assert tools["recover_cuda"].annotations.destructive_hint is True
    assert tools["drain_route"].input_schema["properties"]["dry_run"]["type"] == "boolean"
    assert "route" in tools["drain_route"].input_schema["required"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_tools(bridge, transport):
    async def fn(s):
        return (payload(await s.call_tool("route_status", {})), payload(await s.call_tool("model_list", {})),
                payload(await s.call_tool("cluster_nodes", {})),
                payload(await s.call_tool("node_engine_url", {"node": "gpu-a"})),
                payload(await s.call_tool("node_ollama_url", {"node": "gpu-a"})),
                await s.call_tool("infra_list", {"node": "gpu-a"}))
    status, models, nodes, eng, oll, infra = session(bridge, transport, "reader")(fn)
    assert set(status["routes"]) == {"eyes", "hands", "brain", "mouth"}
    ids = {m["id"]: m for m in models["models"]}
    assert ids["gemma-4-31b"]["route"] == "mouth" and ids["gemma-4-31b"]["state"] in ("ready", "drained")
    by_node = {n["node"]: n for n in nodes["nodes"]}
    assert [e["route"] for e in by_node["gpu-a"]["engines"]] == ["eyes"]
    assert by_node["gpu-a"]["engines"][0]["runtime"] == "vllm"
    assert eng["engines"][0]["url"].endswith("/v1")
    assert oll["url"] == "http://127.0.0.1:11434"
    assert infra.is_error and "infra_list requires the hub" in text(infra)    # files come through the node agents


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_key_is_refused_mutating_tools(bridge, transport):
    async def fn(s):
        return [await s.call_tool(name, args) for name, args in
                (("drain_route", {"route": "mouth", "dry_run": True}), ("reload_policy", {"dry_run": True}),
                 ("key_usage", {}))]
    for res in session(bridge, transport, "reader")(fn):
        assert res.is_error and "refused" in text(res) and "'admin' scope" in text(res)
    st = httpx.get(bridge["router"] + "/admin/upstreams", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert st["routes"]["mouth"]["drained"] is False


def test_key_without_scope_or_unknown_is_refused_at_http(bridge):
    r = httpx.post(bridge["base"] + "/mcp", json={}, headers={"Authorization": f"Bearer {bridge['tokens']['plain']}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"
    r = httpx.get(bridge["base"] + "/sse", headers={"Authorization": "Bearer hlr_nope_nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(bridge["base"] + "/mcp", json={})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dry_run_changes_nothing(bridge, transport):
    async def fn(s):
        return (payload(await s.call_tool("drain_route", {"route": "hands", "dry_run": True})),
                payload(await s.call_tool("reload_policy", {"dry_run": True})),
                payload(await s.call_tool("route_status", {"route": "hands"})))
    drain, reload, status = session(bridge, transport, "ops")(fn)
    assert drain["dry_run"] is True and drain["would_change"] is True and "POST /admin/drain/hands" in drain["would_do"]
    assert reload["dry_run"] is True and reload["valid"] is True and reload["routes_removed"] == []
    assert status["routes"]["hands"]["drained"] is False


def test_drain_then_route_status_then_undrain(bridge):
    async def fn(s):
        out = [payload(await s.call_tool("drain_route", {"route": "brain"})),
               payload(await s.call_tool("route_status", {"route": "brain"}))]
        out.append(payload(await s.call_tool("drain_route", {"route": "brain", "drain": False})))
        out.append(payload(await s.call_tool("reload_policy", {})))
        return out
    drained, status, undrained, reloaded = session(bridge, "streamable-http", "ops")(fn)
    assert drained == {"dry_run": False, "route": "brain", "drained": True}
    assert status["routes"]["brain"]["drained"] is True
    assert undrained["drained"] is False
    assert reloaded["reloaded"] is True and reloaded["generation"] >= 2
    audit = [json.loads(ln) for ln in bridge["audit"].read_text().splitlines()]
    mine = [a for a in audit if a["app"] == "ops" and a["tool"] == "drain_route" and a["dry_run"] is None]
    assert mine and mine[-1]["outcome"] == "ok" and mine[-1]["key_id"] and "token" not in json.dumps(audit)
    assert bridge["tokens"]["ops"] not in bridge["audit"].read_text()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_arguments_are_tool_errors_and_session_survives(bridge, transport):
    async def fn(s):
        out = [await s.call_tool("drain_route", {"route": "nope"}),
               await s.call_tool("drain_route", {"route": "../x"}),
               await s.call_tool("drain_route", {}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": "/etc/homelab/../shadow"}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": "etc/x"}),
               await s.call_tool("node_ollama_url", {"node": "ghost"}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": "/etc/homelab/engine.env"}),
               await s.call_tool("model_load", {"model": "qwen", "dry_run": True}),
               await s.call_tool("recover_cuda", {"node": "gpu-a", "dry_run": True})]
        out.append(await s.call_tool("route_status", {}))     # the session still works
        return out
    res = session(bridge, transport, "ops")(fn)
    assert all(r.is_error for r in res[:-1])
    assert "unknown route 'nope'" in text(res[0])
    assert "route" in text(res[1]) and "pattern" in text(res[1]).lower()
    assert "route" in text(res[2]) and "required" in text(res[2]).lower()
    assert "must not contain '..'" in text(res[3])
    assert "path" in text(res[4])
    assert "unknown node 'ghost'" in text(res[5])
    assert "infra_read requires the hub" in text(res[6])
    assert "the catalog has no model 'qwen'" in text(res[7])
    assert "requires the hub (hub.enabled: true" in text(res[8]) and "eyes" in text(res[8])
    assert not res[-1].is_error


def test_audit_has_refusals(bridge):
    async def fn(s):
        return await s.call_tool("recover_cuda", {"node": "gpu-a", "dry_run": True})
    assert session(bridge, "sse", "reader")(fn).is_error
    lines = [json.loads(ln) for ln in bridge["audit"].read_text().splitlines()]
    refused = [a for a in lines if a["outcome"] == "refused"]
    assert refused and all(a["app"] == "reader" and a["error"] == "scope_missing" for a in refused)
    assert any(a["tool"] == "recover_cuda" and a["transport"] == "sse" for a in refused)
