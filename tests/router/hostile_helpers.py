"""Shared helpers for the tests of issue 11 (hostile input, broken and slow engines, the client contract)."""
from __future__ import annotations

import json
import os
import socket

from router_app.access.store import Store


def read_log(router, name: str) -> list:
    router.flush_logs()
    path = os.path.join(router.app.logs.dir, name)
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def stat(client, family: str, **labels) -> float:
    """Sum of a /stats counter over the series matching `labels`."""
    total = 0
    for row in client.get("/stats").json().get(family, []):
        if all(str(row.get(k)) == str(v) for k, v in labels.items()):
            total += row["value"]
    return total


def in_flight(router) -> dict:
    return {n: s.in_flight for n, s in router.app.runtime.states.items()}


def raw_request(port: int, body: bytes, headers: dict | None = None, content_length: int | None = None,
                path: str = "/v1/chat/completions") -> socket.socket:
    """Sends a request on a fresh socket (the body may be partial) and returns the open socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    hdrs = {"Host": "router", "Content-Type": "application/json",
            "Content-Length": str(len(body) if content_length is None else content_length), **(headers or {})}
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    s.sendall(head.encode() + body)
    return s


def read_response(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if rest and b"content-length:" in head.lower():
            n = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")][0].split(b":")[1])
            if len(rest) >= n:
                break
    return data


def keyed(cfg: dict, tmp_path, app: str = "tester") -> str:
    """Turns key enforcement on (a store with one key) and returns the key's secret."""
    cfg["store_path"] = str(tmp_path / "state" / "router.sqlite3")
    os.makedirs(tmp_path / "state", exist_ok=True)
    st = Store(cfg["store_path"])
    try:
        _, secret = st.create_key(app)
    finally:
        st.close()
    return secret


def chat_body(text: str = "tell me about rivers", **extra) -> dict:
    return {"model": "homelab/auto", "messages": [{"role": "user", "content": text}], **extra}
