"""How the router's connections end (router_app/ops/httpconn.py), on the real `homelab-router serve --fd` process:

* A connection accepted before SIGTERM whose request comes after it (a proxy dialled just before the stop; with
  homelab-router.socket the kernel completes the handshake, the old process accepts) is answered, with
  `Connection: close`, not closed under the request (Caddy turns that into a 502 it cannot retry for a POST: the
  lab's "router restart under load" saw one in CI).
* An idle keep-alive connection at SIGTERM: a request sent on it right after the signal is answered too.
* A connection that never sends a request does not hold the stop: the old process exits within a few seconds.
* Through the real Caddy with the caddy role's Caddyfile: an answer the router gives before it reads the body (401)
  reaches the client whole (Caddy buffers request bodies).
"""
from __future__ import annotations

import signal
import socket
import time

import httpx
import yaml

from hub_rig import ADMIN_KEY
from test_hub_restart_under_load import FdRig


def _read_response(s: socket.socket, timeout: float = 10.0) -> tuple[str, dict, bytes]:
    """One HTTP/1.1 response with a Content-Length, read to its end -> (status line, headers, body)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before the headers; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    want = int(headers["content-length"])
    while len(body) < want:
        chunk = s.recv(65536)
        assert chunk, f"connection closed after {len(body)} of {want} body bytes"
        body += chunk
    return lines[0], headers, body


def _undrain(rig) -> bytes:
    """POST /admin/undrain/<a route of the rig's config>: harmless, answered 200 by the router itself."""
    route = next(iter(yaml.safe_load(rig.cfg_path.read_text())["routes"]))
    return (f"POST /admin/undrain/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def test_request_on_a_connection_accepted_before_the_stop_is_answered(tmp_path):
    rig = FdRig(tmp_path)
    try:
        rig.start_router()
        fresh = socket.create_connection(("127.0.0.1", rig.port))         # accepted, nothing sent yet
        idle = socket.create_connection(("127.0.0.1", rig.port))          # one answer, then idle keep-alive
        idle.sendall(_undrain(rig))
        status, _, _ = _read_response(idle)
        time.sleep(0.3)
        rig.router.send_signal(signal.SIGTERM)
        time.sleep(0.2)                                                   # the old process is stopping now
        idle.sendall(_undrain(rig))
        fresh.sendall(_undrain(rig))
        for s in (idle, fresh):
            status, headers, body = _read_response(s)
            assert status.startswith("HTTP/1.1 200"), (status, body[:300])
            assert headers.get("connection") == "close", headers      # the connection's last answer
            assert s.recv(1) == b""                                     # and then it ends, cleanly
        rig.router.wait(15)
        rig.router = None
        rig.start_router()                                             # the same socket, a new process
        s = socket.create_connection(("127.0.0.1", rig.port))
        s.sendall(_undrain(rig))
        assert _read_response(s)[0].startswith("HTTP/1.1 200")
        s.close()
        fresh.close()
        idle.close()
    finally:
        rig.close()


def test_a_silent_connection_does_not_hold_the_stop(tmp_path):
    rig = FdRig(tmp_path)
    try:
        rig.start_router()
        silent = socket.create_connection(("127.0.0.1", rig.port))
        time.sleep(0.3)
        t0 = time.monotonic()
        rig.router.send_signal(signal.SIGTERM)
        rig.router.wait(15)
        took = time.monotonic() - t0
        rig.router = None
        assert took < 8, f"the stop took {took:.1f} s with one silent connection open"
        silent.settimeout(5)
        assert silent.recv(1) == b""            # closed by the old process, not left to the kernel
        silent.close()
    finally:
        rig.close()


def test_an_early_answer_through_caddy_arrives_whole(tmp_path):
    """The router answers a request with a bad key on its headers (401 before the body is read: it costs the router
    nothing). Through Caddy, with the body streamed, that answer was now and then cut after its headers: Caddy's
    transport was still copying the request body when the 401 came; Go's HTTP/1 server closes a request body once
    the response has begun (golang/go#40747), the copy failed, Caddy closed the upstream connection, and the client
    got the headers and no body (CI and the lab: "received 0 bytes, expected 101"; Caddy: "aborting with incomplete
    response ... use of closed network connection"; 10 of 1500 here before the fix). The caddy role's Caddyfile
    buffers request bodies (buffer_requests): none is cut. A 10 MiB body with a bad key: the router reads it before
    its 401 (router_app/ops/readfirst.py; answered unread, Caddy's write into the closed connection made it a 502).
    A declared body over caddy_request_body_max_bytes (32 MiB) gets Caddy's own OpenAI-shaped 413."""
    import os

    from caddy_front import CaddyFront, post_many

    rig = FdRig(tmp_path, mutate=lambda cfg: cfg.update(auth="required"))
    front = None
    try:
        rig.start_router()
        front = CaddyFront(tmp_path, rig.port)
        assert "buffer_requests" in front.caddyfile.read_text()
        front.start()
        n = int(os.environ.get("EARLY_ANSWER_REQUESTS", "400"))
        got = post_many(front.url + "/v1/chat/completions", n, headers={"Authorization": "Bearer hlr_0000_unknown"},
                        json={"model": "homelab/auto", "messages": [{"role": "user", "content": "hi"}]})
        assert got == {(401, "invalid_api_key"): 3 * n}, got

        key = {"Authorization": "Bearer hlr_0000_unknown", "Content-Type": "application/json"}
        for _ in range(3):     # a large body and a bad key: the router reads the body, then answers 401
            r = httpx.post(front.url + "/v1/chat/completions", content=b" " * (10 << 20), headers=key, timeout=60)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text[:300]
        r = httpx.post(front.url + "/v1/chat/completions", content=b" " * (40 << 20), headers=key, timeout=60)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text[:300]   # by Caddy
        assert "33554432" in r.json()["error"]["message"]
    finally:
        if front:
            front.stop()
        rig.close()
