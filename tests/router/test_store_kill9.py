"""Restart durability: SIGKILL the router process in the middle of load, then check the ledger."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
import yaml

from conftest import example_dict  # noqa: E402
from engine import Engine, free_port  # noqa: E402

from router_app.access.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(cfg_path: str, port: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "router_app", "serve", "--config", cfg_path, "--port", str(port)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        if p.poll() is not None:
            raise RuntimeError("router exited: " + p.stderr.read().decode()[-2000:])
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("router did not start")


@pytest.fixture
def engine():
    e = Engine("mouth", "gemma-4-31b")
    yield e
    e.close()


def test_sigkill_mid_load_loses_and_doubles_nothing(tmp_path, engine):
    cfg = example_dict()
    for r in cfg["routes"].values():
        r["url"] = engine.url
        r.pop("api_key_env", None)
        r["max_concurrency"] = 64
    cfg["admin_key_env"] = "TEST_ROUTER_ADMIN_KEY_UNSET"
    cfg["log_dir"] = str(tmp_path / "logs")
    cfg["health"] = {"interval_s": 3600, "timeout_s": 1}
    cfg["store_path"] = str(tmp_path / "router.sqlite3")
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg))
    st = Store(cfg["store_path"])
    _, key = st.create_key("loadgen", tokens_per_month=10_000_000)
    st.close()

    port = free_port()
    proc = _start(str(path), port)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    answered: list[str] = []
    sent: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def worker():
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {key}"}) as c:
            while not stop.is_set():
                rid = uuid.uuid4().hex
                with lock:
                    sent.append(rid)
                try:
                    r = c.post(url, headers={"X-Request-Id": rid},
                               json={"model": "homelab/chat", "messages": [{"role": "user", "content": "hi"}]})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    with lock:
                        answered.append(rid)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 15
    while len(answered) < 300 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(answered) >= 300

    conn = sqlite3.connect(cfg["store_path"])
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT request_id, total_tokens FROM usage").fetchall()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a request was counted twice"
    missing = set(answered) - set(ids)
    assert not missing, f"{len(missing)} answered requests have no ledger row"
    assert set(ids) <= set(sent)
    assert len(ids) - len(answered) <= 8          # at most the requests in flight at the kill
    total = sum(r[1] for r in rows)
    conn.close()

    # restart: the budget counters come back from the ledger
    proc = _start(str(path), port)
    try:
        keys = httpx.get(f"http://127.0.0.1:{port}/admin/keys").json()["keys"]
        assert keys[0]["usage"]["tokens_this_month"] == total
        r = httpx.post(url, headers={"Authorization": f"Bearer {key}"},
                       json={"model": "homelab/chat", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
