"""The MCP bridge behind the real Caddy with the caddy role's own Caddyfile (rendered from its template and defaults,
tests/hub/caddy_front.py), as the gateway serves it: calls separated by idle gaps at the old keep-alive edge.

CI once lost an MCP call behind Caddy: Caddy kept idle connections to the bridge for minutes while the bridge (uvicorn's
default) closed them after 5 s, so a POST sent on a connection the bridge was closing came back as a 502 or a cut
body (reproduced here: 1 session in 40 with 5 s gaps). Two fixes, each checked: Caddy opens a new connection to the
bridge per request (caddy_upstream_keepalive "off" also covers the @mcp handler) and the bridge keeps an idle
connection 75 s, like the router, for clients that reuse theirs."""
from __future__ import annotations

import os
import re
import socket
import sys
import time

from test_mcp_bridge import payload, session
from test_mcp_cluster import cluster  # noqa: F401  (the fixture: router + hub + agent + bridge processes)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "hub"))
from caddy_front import CaddyFront, post_many  # noqa: E402


def _get(sock: socket.socket, host: str) -> bytes:
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_the_bridge_keeps_an_idle_connection_past_five_seconds(cluster):  # noqa: F811
    host = cluster["base"].split("//", 1)[1]
    addr, port = host.rsplit(":", 1)
    with socket.create_connection((addr, int(port)), timeout=10) as sock:
        assert _get(sock, host).startswith(b"HTTP/1.1 200")
        time.sleep(6)                 # past uvicorn's default 5 s: the old bridge had closed the connection by now
        again = _get(sock, host)
    assert again.startswith(b"HTTP/1.1 200"), again


def test_mcp_sessions_through_caddy_with_idle_gaps(cluster, tmp_path):  # noqa: F811
    mport = int(cluster["base"].rsplit(":", 1)[1])
    front = CaddyFront(tmp_path, cluster["rig"].port, caddy_mcp_upstream=f"127.0.0.1:{mport}")
    text = front.caddyfile.read_text()
    mcp_block = re.search(r"handle @mcp \{(.*?)\n\t\}", text, re.S).group(1)
    assert "keepalive off" in mcp_block, mcp_block
    front.start()
    try:
        via = dict(cluster, base=front.url)

        async def calls(s):
            out = [await s.call_tool("cluster_nodes", {})]
            time.sleep(5.05)          # blocking on purpose: nothing moves on any connection meanwhile
            out.append(await s.call_tool("infra_list", {"node": "gpu-a"}))
            return out

        for _ in range(3):
            nodes, infra = session(via, "streamable-http", "reader")(calls)
            assert "gpu-a" in {n["node"] for n in payload(nodes)["nodes"]}
            assert payload(infra)["allowlist"], infra
            time.sleep(5.05)
        log = (tmp_path / "caddy.log").read_text()
        assert '"status":502' not in log, log[-3000:]
    finally:
        front.stop()


def test_the_bridge_401_through_caddy_is_never_cut(cluster, tmp_path):  # noqa: F811
    """POST /mcp without a key through the real Caddy (the lab's test_mcp_without_a_key_is_401 failed in CI with
    "received 0 bytes, expected 101"; 5 of 900 in the lab before roles/caddy's buffer_requests): a new connection per
    request as httpx.post makes, 900 times, and once with a 5 MB body that the bridge reads before its 401."""
    import httpx

    mport = int(cluster["base"].rsplit(":", 1)[1])
    front = CaddyFront(tmp_path, cluster["rig"].port, caddy_mcp_upstream=f"127.0.0.1:{mport}")
    assert "buffer_requests" in re.search(r"handle @mcp \{(.*?)\n\t\}", front.caddyfile.read_text(), re.S).group(1)
    front.start()
    try:
        got = post_many(front.url + "/mcp", 300, json={})
        assert got == {(401, "missing_api_key"): 900}, got
        big = httpx.post(front.url + "/mcp", content=b" " * (5 << 20), timeout=60,
                         headers={"Content-Type": "application/json"})
        assert (big.status_code, big.json()["error"]["code"]) == (401, "missing_api_key"), big.text[:300]
    finally:
        front.stop()
