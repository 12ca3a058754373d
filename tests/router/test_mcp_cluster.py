"""The MCP bridge's hub and catalog tools end to end: a real router process with the hub and the model catalog on
(tests/hub/hub_rig.py), a real homelab-agent process registering node gpu-a (cards from the nvidia-smi test double),
the Ollama test double of tests/doubles/catalog_engines.py behind a catalogued route, a real bridge process, and the
official SDK client over both transports. Each tool goes through the router's admin API, as an operator would."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from engine import free_port
from router_app.access import scopes
from router_app.access.store import Store
from test_mcp_bridge import _wait_http, payload, session, text

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "hub"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "doubles"))
from catalog_engines import OllamaDouble  # noqa: E402
from hub_rig import Rig, env  # noqa: E402

GB = 1024 ** 3


def _infra_tree(tmp) -> list:
    """gpu-a's allowlist: etc-homelab/ (agent.json, a symlink leading out) and one file; outside/ is not in it."""
    d, out = tmp / "etc-homelab", tmp / "outside"
    d.mkdir()
    out.mkdir()
    (d / "agent.json").write_text('{"interval_s": 5}\n')
    (out / "private.txt").write_text("not yours\n")
    os.symlink(out / "private.txt", d / "escape")
    (tmp / "Caddyfile").write_text(":443 {\n}\n")
    return [str(d), str(tmp / "Caddyfile")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp-cluster")
    ollama = OllamaDouble({"llama3.2:3b": 2 * GB, "qwen3:8b": 5 * GB})
    mport = free_port()

    def mutate(cfg):
        cfg["routes"]["ollama"] = {"url": ollama.url + "/v1", "model": "llama3.2:3b", "max_concurrency": 2,
                                   "terminal": True, "queue_timeout_s": 2, "first_byte_timeout_s": 5,
                                   "catalog": {"engine": "ollama", "residency": "on_demand", "vram_mb": 12 * 1024}}
        # stale_s well above the agent's 1 s heartbeat: a slow box must not see the card figures lapse between beats
        cfg["catalog"] = {"refresh_s": 0.2, "stale_s": 10.0}
        cfg["hub"]["agents"]["gpu-a"]["routes"] = ["eyes", "ollama"]
        cfg["mcp"] = {"listen": {"host": "127.0.0.1", "port": mport}}

    rig = None
    bridge = None
    try:
        rig = Rig(tmp, mutate=mutate)
        cfg = yaml.safe_load(rig.cfg_path.read_text())
        cfg["mcp"]["router_url"] = rig.url        # the rig passes --port; the bridge reads the file
        rig.cfg_path.write_text(yaml.safe_dump(cfg))
        st = Store(str(tmp / "access.db"))
        tokens = {}
        for app, sc in (("reader", ["read"]), ("ops", ["admin"])):
            _, tokens[app] = st.create_key(app)
            scopes.set_scopes(st.conn, app, sc)
        st.close()
        rig.start_router()
        rig.infra_paths["gpu-a"] = _infra_tree(tmp)
        rig.start_agent("gpu-a")
        rig.wait(lambda: rig.node("gpu-a").get("gpus"), what="gpu-a's first heartbeat")
        rig.wait(lambda: _catalog_has_agent_figures(rig), what="the catalog's VRAM ledger fed by gpu-a's agent")
        bridge = subprocess.Popen([sys.executable, "-m", "router_app", "mcp", "--config", str(rig.cfg_path)],
                                  cwd=tmp, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_http(f"http://127.0.0.1:{mport}/healthz", bridge, "bridge")
        yield {"base": f"http://127.0.0.1:{mport}", "tokens": tokens, "rig": rig, "ollama": ollama, "tmp": tmp}
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
        if rig is not None:
            rig.close()
        ollama.close()


def _catalog_has_agent_figures(rig) -> bool:
    """True once the catalog has copied gpu-a's card figures (its next refresh after the first heartbeat)."""
    r = rig.admin.get("/admin/catalog")
    return r.status_code == 200 and r.json()["routes"]["ollama"]["vram"]["source"] == "agent"


def call(cluster, transport, app, tool, args):
    async def fn(s):
        return await s.call_tool(tool, args)
    return session(cluster, transport, app)(fn)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_cluster_nodes_shows_the_registered_node_with_its_cards(cluster, transport):
    out = payload(call(cluster, transport, "reader", "cluster_nodes", {}))
    assert out["source"] == "hub"
    nodes = {n["node"]: n for n in out["nodes"]}
    a = nodes["gpu-a"]
    assert a["health"] == "healthy" and a["age_s"] is not None
    card = a["cards"][0]                      # the nvidia-smi double's CSV: 24564 MiB total, 20100 used
    assert card["name"] == "NVIDIA GeForce RTX 4090" and card["memory_free_mib"] == 24564 - 20100
    assert a["vram"] == {"total_mib": 24564, "used_mib": 20100, "free_mib": 4464}
    engines = {e["route"]: e for e in a["engines"]}
    assert engines["ollama"]["runtime"] == "ollama" and engines["ollama"]["healthy"] is True
    assert engines["eyes"]["name"] == "vllm-eyes"      # what the agent reports of its engines
    assert nodes["gpu-b"]["health"] == "unknown" and nodes["gpu-b"]["cards"] == []   # configured, never reported


def test_model_list_shows_catalog_states(cluster):
    out = payload(call(cluster, "streamable-http", "reader", "model_list", {}))
    models = {m["id"]: m for m in out["models"]}
    assert models["qwen3:8b"]["states"] == {"ollama": "on_disk"} and models["qwen3:8b"]["source"] == "catalog"
    assert any(m["source"] in ("route", "alias") for m in out["models"])     # the routes' fixed models too


def _set_used(cluster, used_mib: int) -> None:
    """Rewrites the nvidia-smi double's CSV for gpu-a and waits until the hub has the new figure."""
    rig = cluster["rig"]
    csv = rig.tmp / "agent-gpu-a" / "gpus.csv"
    fields = csv.read_text().strip().split(", ")
    fields[4] = str(used_mib)
    csv.write_text(", ".join(fields) + "\n")
    rig.wait(lambda: rig.node("gpu-a")["gpus"][0]["memory_used_mib"] == used_mib, what=f"gpu-a at {used_mib} MiB")
    time.sleep(0.5)                 # the catalog copies the hub's figures on its next refresh (refresh_s 0.2)


def test_model_load_dry_run_then_load_and_unload_on_the_double(cluster):
    ollama = cluster["ollama"]
    before = len(ollama.calls)
    # gpu-a's agent reports 20100 of 24564 MiB used (eyes' pinned model): 5 GiB does not fit, by the agent's figures
    full = call(cluster, "streamable-http", "ops", "model_load", {"model": "qwen3:8b", "node": "gpu-a"})
    assert full.is_error and "no room" in text(full) and "qwen3:8b" not in ollama.running
    _set_used(cluster, 9000)        # the card frees up: the next heartbeat tells the catalog
    try:
        dry = payload(call(cluster, "sse", "ops", "model_load", {"model": "qwen3:8b", "node": "gpu-a", "dry_run": True}))
        assert dry["dry_run"] and dry["route"] == "ollama" and dry["state_now"] == "on_disk"
        assert "POST /admin/models/load" in dry["would_do"]
        assert not any(c[1] == "/api/generate" for c in ollama.calls[before:])     # a dry run loads nothing
        done = payload(call(cluster, "streamable-http", "ops", "model_load", {"model": "qwen3:8b", "node": "gpu-a"}))
    finally:
        _set_used(cluster, 20100)
    assert done["route"] == "ollama" and done["state"] == "hot" and "qwen3:8b" in ollama.running
    states = {m["id"]: m for m in payload(call(cluster, "sse", "reader", "model_list", {}))["models"]}
    assert states["qwen3:8b"]["states"] == {"ollama": "hot"}
    dry = payload(call(cluster, "sse", "ops", "model_unload", {"model": "qwen3:8b", "dry_run": True}))
    assert dry["would_unload_from"] == ["ollama"] and "qwen3:8b" in ollama.running
    done = payload(call(cluster, "sse", "ops", "model_unload", {"model": "qwen3:8b"}))
    assert done["unloaded_from"] == ["ollama"] and "qwen3:8b" not in ollama.running
    bad = call(cluster, "sse", "ops", "model_load", {"model": "nope:1b", "dry_run": True})
    assert bad.is_error and "the catalog has no model 'nope:1b'" in text(bad)
    bad = call(cluster, "sse", "ops", "model_load", {"model": "qwen3:8b", "node": "gpu-b", "dry_run": True})
    assert bad.is_error and "no catalogued route" in text(bad)
    refused = call(cluster, "sse", "reader", "model_load", {"model": "qwen3:8b", "dry_run": True})
    assert refused.is_error and "admin" in text(refused)


def test_recover_cuda_queues_a_command_and_a_read_key_is_refused(cluster):
    rig = cluster["rig"]
    dry = payload(call(cluster, "streamable-http", "ops", "recover_cuda", {"node": "gpu-a", "dry_run": True}))
    assert dry["dry_run"] and dry["command"]["kind"] == "recover_cuda" and "ollama" in dry["routes"]
    assert not rig.admin.get("/admin/commands", params={"node": "gpu-a"}).json()["commands"]   # nothing queued
    refused = call(cluster, "sse", "reader", "recover_cuda", {"node": "gpu-a"})
    assert refused.is_error and "refused" in text(refused) and "admin" in text(refused)
    assert not rig.admin.get("/admin/commands", params={"node": "gpu-a"}).json()["commands"]
    out = payload(call(cluster, "sse", "ops", "recover_cuda", {"node": "gpu-a"}))
    assert out["command_id"].startswith("cmd_") and out["node"] == "gpu-a"
    cmd = rig.command(out["command_id"])
    assert cmd["kind"] == "recover_cuda" and cmd["requested_by"].startswith("admin-key@")
    bad = call(cluster, "sse", "ops", "recover_cuda", {"node": "ghost", "dry_run": True})
    assert bad.is_error and "unknown node 'ghost'" in text(bad)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_infra_list_and_read_an_allowlisted_file_through_the_agent(cluster, transport):
    tmp = cluster["tmp"]

    async def fn(s):
        return (await s.call_tool("infra_list", {"node": "gpu-a"}),
                await s.call_tool("infra_list", {"node": "gpu-a", "path": str(tmp / "etc-homelab")}),
                await s.call_tool("infra_read", {"node": "gpu-a", "path": str(tmp / "etc-homelab" / "agent.json")}),
                await s.call_tool("infra_read", {"node": "gpu-a", "path": str(tmp / "Caddyfile"), "max_bytes": 3}))
    allow, listing, read, short = [payload(r) for r in session(cluster, transport, "reader")(fn)]
    assert allow["allowlist"] == [str(tmp / "etc-homelab"), str(tmp / "Caddyfile")]
    entries = {e["path"].rsplit("/", 1)[1]: e for e in listing["entries"]}
    assert entries["agent.json"]["type"] == "file" and entries["agent.json"]["size"] == 18
    assert "symlink escape" in entries["escape"]["refused"]
    assert read["content"] == '{"interval_s": 5}\n' and read["encoding"] == "utf-8" and read["truncated"] is False
    assert read["size"] == 18 and read["mtime"] > 0 and read["command_id"].startswith("cmd_")
    assert short["content"] == ":44" and short["truncated"] is True
    cmd = cluster["rig"].command(read["command_id"])           # audited like every command
    assert cmd["kind"] == "read_file" and cmd["status"] == "succeeded" and cmd["requested_by"].startswith("admin-key@")


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_infra_read_refusals_are_clear_tool_errors(cluster, transport):
    tmp = cluster["tmp"]

    async def fn(s):
        out = [await s.call_tool("infra_read", {"node": "gpu-a", "path": str(tmp / "outside" / "private.txt")}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": str(tmp / "etc-homelab" / "escape")}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": f"{tmp}/etc-homelab/../outside/private.txt"}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": "etc/hostname"}),
               await s.call_tool("infra_read", {"node": "gpu-a", "path": str(tmp / "Caddyfile"),
                                                "max_bytes": 10 ** 6}),
               await s.call_tool("infra_list", {"node": "gpu-b", "path": "/etc"}),
               await s.call_tool("infra_list", {"node": "ghost"})]
        out.append(await s.call_tool("infra_list", {"node": "gpu-a"}))      # the session still works
        return out
    res = session(cluster, transport, "reader")(fn)
    assert all(r.is_error for r in res[:-1]) and not res[-1].is_error
    assert "outside the infra allowlist of node gpu-a" in text(res[0])
    assert "refused by the node agent" in text(res[1]) and "symlink escape" in text(res[1])
    assert "must not contain '..'" in text(res[2])
    assert "path" in text(res[3]) and "pattern" in text(res[3]).lower()
    assert "max_bytes" in text(res[4])
    assert "gpu-b is offline" in text(res[5])
    assert "unknown node 'ghost'" in text(res[6])
    assert "not yours" not in "".join(text(r) for r in res)


def test_infra_read_times_out_clearly(cluster, monkeypatch):
    """The agent is stopped after its last heartbeat: the hub still thinks it online, the command waits, the tool
    gives up after its bound (shortened here) with the command id."""
    import asyncio

    from router_app.mcpbridge import cluster as ops
    from router_app.mcpbridge.services import Services
    rig = cluster["rig"]
    rig.stop_agent("gpu-a")
    try:
        svc = Services(str(rig.cfg_path), admin_key="hub-test-admin-key")

        async def go():
            try:
                return await svc.hub_file("gpu-a", "read_file", {"path": str(cluster["tmp"] / "Caddyfile")},
                                          wait_s=0.5)
            finally:
                await svc.close()
        with pytest.raises(ops.ServiceError, match=r"timed out after 0.5 s waiting for gpu-a's agent .*command cmd_"):
            asyncio.run(go())
    finally:
        rig.start_agent("gpu-a")
        rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="gpu-a back")
