"""The control plane (issue 13) and the MCP bridge (issue 15) end to end on the lab.

Every homelab_agents host runs the real homelab-agent (roles/homelab_agent), connecting out through Caddy to the
hub inside homelab-router on the gateway. A dead engine is brought back by one authenticated call
(`POST /admin/recover-cuda`): the hub queues the command, the node's agent runs the recover_cuda runbook through
ansible-runner, the gpu_watchdog's recover-cuda restarts the node's engines, and the events show
down -> recovery -> up. The MCP bridge is reached like an MCP client on the LAN would: Caddy's TLS at /mcp, with
the official SDK's client and per-app keys with scopes.
"""
from __future__ import annotations

import json
import ssl
import time

import anyio
import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py
from test_lab_e2e import CODING, ROUTE_HEADER, chat, engine_container, engine_unit, wait_until

podman_exec = labmod.podman_exec

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.xdist_group("lab"), pytest.mark.timeout(1800)]


def trust(lab) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(lab["ca"]))


def _admin_key() -> str:
    import yaml
    return yaml.safe_load((labmod.STATE / "secrets.yml").read_text())["vault_router_admin_key"]


def admin(lab, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """The router's admin API on the gateway's loopback (where operators and the MCP bridge call it)."""
    argv = ["curl", "-sS", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-X", method,
            "-H", f"Authorization: Bearer {_admin_key()}", f"http://127.0.0.1:4000{path}"]
    if body is not None:
        argv[-1:-1] = ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = podman_exec(lab["lab"].container(lab["lab"].gateway), *argv).stdout
    text, _, code = out.rpartition("\n")
    try:
        return int(code), (json.loads(text) if text.strip() else {})
    except ValueError as exc:
        raise AssertionError(f"{method} {path}: not JSON ({exc}): {text[:500]!r}") from None


def _nodes(lab) -> dict:
    code, body = admin(lab, "GET", "/admin/nodes")
    assert code == 200, body
    return {n["node"]: n for n in body["nodes"]}


def test_every_agent_reports_to_the_hub(lab):
    inv = lab["lab"]
    agents = set(inv.groups.get("homelab_agents") or [])
    assert {"ubuntu-4090", "ubuntu-6000", "spark", "ai-gateway"} <= agents
    nodes = wait_until(lambda: (lambda n: n if all(n.get(a, {}).get("state") == "healthy" for a in agents)
                                else None)(_nodes(lab)), timeout=90, what="every agent healthy")
    assert nodes["ubuntu-4090"]["routes"] == ["eyes"] and nodes["spark"]["routes"] == ["brain"]
    # Engines as the agent sees them on the node, and the node's own figures.
    assert any(e.get("route") == "eyes" for e in nodes["ubuntu-4090"]["engines"]), nodes["ubuntu-4090"]
    assert nodes["ubuntu-4090"]["memory"]["total_bytes"] > 0 and nodes["ubuntu-4090"]["age_s"] < 30


def test_recover_cuda_brings_a_dead_engine_back(lab, client):
    container, unit = engine_container(lab, "eyes"), engine_unit(lab, "eyes")
    code, before = admin(lab, "GET", "/admin/events?limit=1")
    since = before["events"][-1]["id"] if before.get("events") else 0
    # The node's own watchdog would restart the engine within a minute; here it has failed to (its timer is held),
    # which is when an operator (or an agent skill) calls recover-cuda.
    podman_exec(container, "systemctl", "stop", "gpu-watchdog.timer")
    podman_exec(container, "systemctl", "stop", unit)          # the engine's CUDA context is gone: it is dead
    try:
        def down() -> bool:
            try:
                chat(client, "Describe what you see quickly", model="homelab/vision")   # the router learns it
            except Exception:  # noqa: BLE001 - eyes is down: an error or a failover answer are both fine
                pass
            return admin(lab, "GET", "/admin/upstreams")[1]["routes"]["eyes"]["healthy"] is False
        wait_until(down, timeout=60, interval=2, what="router marks eyes down")
        code, cmd = admin(lab, "POST", "/admin/recover-cuda", {"route": "eyes"})
        assert code == 202 and cmd["node"] == "ubuntu-4090" and cmd["kind"] == "recover_cuda", cmd
        done = wait_until(lambda: (lambda c: c if c["status"] in ("succeeded", "failed", "expired", "lost")
                                   else None)(admin(lab, "GET", f"/admin/commands/{cmd['id']}")[1]),
                          timeout=300, interval=2, what="recover_cuda command finished")
        assert done["status"] == "succeeded", done
        wait_until(lambda: admin(lab, "GET", "/admin/upstreams")[1]["routes"]["eyes"]["healthy"] is True,
                   timeout=90, what="router marks eyes up again")
    finally:
        podman_exec(container, "systemctl", "start", unit, check=False)
        podman_exec(container, "systemctl", "start", "gpu-watchdog.timer", check=False)
    headers, _ = chat(client, "Describe what you see quickly", model="homelab/vision")
    assert headers[ROUTE_HEADER] == "eyes"
    code, ev = admin(lab, "GET", f"/admin/events?since={since}&limit=500")
    kinds = [e["kind"] for e in ev["events"] if e.get("route") in ("eyes", None) or e.get("node") == "ubuntu-4090"]
    order = [k for k in kinds if k in ("route_down", "recovery_requested", "recovery_succeeded", "route_up")]
    assert "route_down" in order and "recovery_succeeded" in order, kinds
    # down -> recovery -> up (the agent's report of success may land just after the route is seen up again)
    down, rec, up = order.index("route_down"), order.index("recovery_requested"), len(order) - 1 - \
        order[::-1].index("route_up")
    assert down < rec < up, order


def test_drain_through_the_api_keeps_pins(lab, client):
    code, _ = admin(lab, "POST", "/admin/drain/hands")
    assert code == 200
    try:
        headers, _ = chat(client, CODING)
        assert headers[ROUTE_HEADER] != "hands", "a drained route still gets auto-routed traffic"
        headers, _ = chat(client, CODING, model="homelab/code")
        assert headers[ROUTE_HEADER] == "hands", "a pin must pass a drain"
    finally:
        admin(lab, "POST", "/admin/undrain/hands")


# ------------------------------------------------------------------------------------------------ MCP


@pytest.fixture(scope="module")
def mcp_keys(lab):
    cli, cfg = labmod.router_cli(lab["lab"]), labmod.router_config_path(lab["lab"])
    keys = {}
    for app, scope in (("lab-mcp-admin", "admin"), ("lab-mcp-read", "read")):
        keys[app] = labmod.create_key(lab["lab"], app)
        labmod.run([*cli, "keys", "scopes", "--config", cfg, app, "--set", scope])
    return keys


def _gateway_journal(lab, since: float) -> str:
    gw = lab["lab"].container(lab["lab"].gateway)
    parts = []
    for unit in ("caddy", "homelab-router-mcp"):
        out = labmod.podman_exec(gw, "journalctl", "-u", unit, "--since", f"@{int(since)}", "--no-pager", "-o", "cat",
                                 check=False).stdout
        parts.append(f"--- journalctl -u {unit}\n{out[-4000:]}")
    return "\n".join(parts)


def _mcp(lab, key: str, fn):
    """fn(ClientSession) in one MCP session through Caddy's TLS with the official SDK client. No retry: the answers
    that were once cut in transit here (headers, then the connection closed) came from Caddy streaming request
    bodies (roles/caddy's buffer_requests, tests/hub/test_connection_endings.py). A failure carries the gateway's
    Caddy and bridge journals."""
    base = lab["lab"].endpoint.rsplit("/v1", 1)[0]

    async def main():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                      verify=trust(lab)) as hc:
            async with streamable_http_client(base + "/mcp", http_client=hc) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    return await fn(s)
    since = time.time() - 2
    try:
        return anyio.run(main)
    except BaseException as exc:      # noqa: BLE001 (an ExceptionGroup from the SDK's task group)
        raise AssertionError(f"MCP session failed: {exc!r}\n{_gateway_journal(lab, since)}") from exc


def test_mcp_through_caddy_lists_nodes_and_guards_mutations(lab, mcp_keys):
    async def reads(s):
        return [await s.call_tool("cluster_nodes", {}), await s.call_tool("infra_read",
                {"node": "spark", "path": "/etc/shadow"}), await s.call_tool("drain_route", {"route": "mouth"})]
    nodes, outside, drain = _mcp(lab, mcp_keys["lab-mcp-read"], reads)
    assert not nodes.is_error, nodes.content[0].text
    by_node = {n["node"]: n for n in json.loads(nodes.content[0].text)["nodes"]}
    assert {"ubuntu-4090", "ubuntu-6000", "spark"} <= set(by_node)
    assert outside.is_error and "outside the infra allowlist" in outside.content[0].text
    assert drain.is_error and "'admin' scope" in drain.content[0].text

    async def dry(s):
        return await s.call_tool("drain_route", {"route": "mouth", "dry_run": True})
    res = _mcp(lab, mcp_keys["lab-mcp-admin"], dry)
    assert not res.is_error, res.content[0].text
    assert admin(lab, "GET", "/admin/upstreams")[1]["routes"]["mouth"]["drained"] is False


def test_mcp_infra_tools_read_allowlisted_files_on_a_node(lab, mcp_keys):
    """infra_list/infra_read with a read key: spark's agent serves its homelab_agent_infra_paths (the role default:
    /etc/homelab, /etc/systemd/system, /etc/caddy/Caddyfile, /var/log/homelab) and nothing else."""
    wait_until(lambda: _nodes(lab).get("spark", {}).get("state") == "healthy", timeout=90, what="spark healthy")

    async def reads(s):
        return [await s.call_tool("infra_list", {"node": "spark"}),
                await s.call_tool("infra_list", {"node": "spark", "path": "/etc/homelab"}),
                await s.call_tool("infra_read", {"node": "spark", "path": "/etc/homelab/agent.json"}),
                await s.call_tool("infra_read", {"node": "spark", "path": "/etc/homelab/agent.token"}),
                await s.call_tool("infra_read", {"node": "spark", "path": "/etc/shadow"}),
                await s.call_tool("infra_read", {"node": "spark", "path": "/etc/homelab/../shadow"}),
                await s.call_tool("recover_cuda", {"node": "spark", "dry_run": True})]
    allow, listing, agent_json, token, shadow, dotdot, mutating = _mcp(lab, mcp_keys["lab-mcp-read"], reads)
    for r in (allow, listing, agent_json):
        assert not r.is_error, r.content[0].text
    assert "/etc/homelab" in json.loads(allow.content[0].text)["allowlist"]
    entries = {e["path"]: e for e in json.loads(listing.content[0].text)["entries"]}
    assert "refused" not in entries["/etc/homelab/agent.json"]
    assert "refused" in entries["/etc/homelab/agent.token"]              # listed, never served
    got = json.loads(agent_json.content[0].text)
    assert got["encoding"] == "utf-8" and json.loads(got["content"])["node"] == "spark" and got["size"] > 0
    assert token.is_error and "secret" in token.content[0].text
    assert shadow.is_error and "outside the infra allowlist" in shadow.content[0].text
    assert dotdot.is_error and "'..'" in dotdot.content[0].text
    assert mutating.is_error and "'admin' scope" in mutating.content[0].text    # a read key runs no mutating tool
    code, cmds = admin(lab, "GET", "/admin/commands?node=spark&limit=20")
    reads_done = [c for c in cmds["commands"] if c["kind"] == "read_file"]
    assert reads_done and reads_done[0]["status"] in ("succeeded", "refused")   # audited like every command


def test_mcp_without_a_key_is_401(lab):
    base = lab["lab"].endpoint.rsplit("/v1", 1)[0]
    r = httpx.post(base + "/mcp", json={}, verify=trust(lab), timeout=30)
    assert r.status_code == 401, r.text


# ------------------------------------------------------------------------------------------------ restart under load


def test_router_restart_under_load_loses_no_request_and_no_command(lab):
    """`systemctl restart homelab-router` on the gateway while clients send chat requests through Caddy: none fails
    (homelab-router.socket keeps the port open, the old process finishes what it has); a command queued for a node
    whose agent is away is delivered exactly once after the restart."""
    import threading

    import openai

    inv, gw = lab["lab"], lab["lab"].container(lab["lab"].gateway)
    node = "ubuntu-6000"
    podman_exec(inv.container(node), "systemctl", "stop", "homelab-agent")
    try:
        code, cmd = admin(lab, "POST", "/admin/commands", {"kind": "converge_node", "args": {"check": True},
                                                           "node": node, "ttl_s": 900})
        assert code == 202 and cmd["status"] == "queued", cmd
        ok, failures, stop = [0], [], threading.Event()

        def load(stream: bool) -> None:
            http = httpx.Client(verify=trust(lab), timeout=120)
            c = openai.OpenAI(base_url=inv.endpoint, api_key=lab["key"], http_client=http, max_retries=0)
            while not stop.is_set():
                try:
                    if stream:
                        text = "".join((ch.choices[0].delta.content or "") if ch.choices else "" for ch in
                                       c.chat.completions.create(model="homelab/auto", max_tokens=8, stream=True,
                                                                 messages=[{"role": "user", "content": "hi"}]))
                    else:
                        text = chat(c, "hi")[1].choices[0].message.content
                    ok[0] += 1 if text is not None else 0
                except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                    failures.append(f"{type(exc).__name__}: {exc}")
            http.close()
        threads = [threading.Thread(target=load, args=(s,), daemon=True) for s in (False, False, True)]
        for t in threads:
            t.start()
        wait_until(lambda: ok[0] >= 3, timeout=120, what="load running")
        before = ok[0]
        podman_exec(gw, "systemctl", "restart", "homelab-router")
        wait_until(lambda: admin(lab, "GET", "/admin/nodes")[0] == 200, timeout=120, what="router back")
        wait_until(lambda: ok[0] >= before + 6, timeout=120, what="requests answered after the restart")
        stop.set()
        for t in threads:
            t.join(180)
        if failures:        # printed whole (an assertion message is cut): pytest shows a failed test's stdout
            print(f"{len(failures)} failed requests; first ones:", *failures[:5], sep="\n")
            for name in ("upstream-failures.jsonl", "router-events.jsonl"):
                print(f"--- {name}", _router_log_tail(lab, name, 30), sep="\n")
            print("--- journal", podman_exec(gw, "journalctl", "-u", "homelab-router", "-n", "60", "--no-pager",
                                         check=False).stdout, sep="\n")
        assert failures == [], f"{len(failures)} failed requests, the first: {failures[:3]}"
    finally:
        podman_exec(inv.container(node), "systemctl", "start", "homelab-agent", check=False)
    done = wait_until(lambda: (lambda c: c if c["status"] not in ("queued", "delivered", "running") else None)(
        admin(lab, "GET", f"/admin/commands/{cmd['id']}")[1]), timeout=600, interval=3, what="command finished")
    assert done["status"] in ("succeeded", "failed"), done      # ran (a check-mode converge may report drift)
    code, ev = admin(lab, "GET", f"/admin/events?kind=command_delivered&node={node}&limit=1000")
    assert sum(1 for e in ev["events"] if e.get("command") == cmd["id"]) == 1, "delivered more than once"
    code, ev = admin(lab, "GET", "/admin/events?kind=hub_start&limit=1000")
    assert ev["events"], "the restart left no hub_start event"


def _router_log_tail(lab, name: str, n: int = 15) -> str:
    """The last lines of one of the router's JSONL logs on the gateway (diagnostics for a failed assertion)."""
    gw = lab["lab"].container(lab["lab"].gateway)
    return podman_exec(gw, "tail", "-n", str(n), f"/var/log/homelab-router/{name}", check=False).stdout
