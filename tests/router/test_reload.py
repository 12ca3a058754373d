"""Reload: endpoint and SIGHUP, atomic swap, refusal of invalid files, in-flight requests on the old policy."""
import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import yaml

from conftest import ROOT, chat, free_port, rig_config, wait_for


def write(path, cfg):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    os.replace(tmp, path)


def test_valid_reload_changes_policy(router, client):
    cfg = yaml.safe_load(open(router.config_path))
    assert chat(client, "refactor this").headers["x-homelab-route"] == "hands"
    cfg["buckets"]["coding"]["route"] = "brain"
    cfg["buckets"]["utility"]["keywords"].append("zebra")
    write(router.config_path, cfg)
    r = client.post("/admin/reload-config")
    assert r.status_code == 200 and r.json()["generation"] == 2
    assert chat(client, "refactor this").headers["x-homelab-route"] == "brain"
    assert chat(client, "zebra").headers["x-homelab-bucket"] == "utility"


def test_invalid_reload_is_refused_and_old_policy_serves(router, client):
    cfg = yaml.safe_load(open(router.config_path))
    cfg["buckets"]["coding"]["route"] = "gpu9"
    cfg["routes"]["eyes"]["failover"] = "mouth"
    write(router.config_path, cfg)
    r = client.post("/admin/reload-config")
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "config_invalid"
    assert {"path": "buckets.coding.route", "message": "unknown route 'gpu9'"} in body["errors"]
    assert any(e["path"] == "routes.eyes.failover" for e in body["errors"])
    assert chat(client, "refactor this").headers["x-homelab-route"] == "hands"
    assert router.app.runtime.generation == 1
    with open(router.config_path, "w") as fh:
        fh.write("routes: [unclosed\n")
    r = client.post("/admin/reload-config")
    assert r.status_code == 422 and "YAML" in r.json()["error"]["message"]
    assert chat(client, "refactor this").status_code == 200


def test_in_flight_request_finishes_on_the_old_policy(router, client, engines):
    engines["hands"].hold()
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(lambda: chat(httpx.Client(base_url=router.url, timeout=10), "refactor this"))
        wait_for(lambda: engines["hands"].in_flight == 1, what="hands busy")
        cfg = yaml.safe_load(open(router.config_path))
        cfg["buckets"]["coding"]["route"] = "brain"
        cfg["routes"]["hands"]["max_concurrency"] = 2
        write(router.config_path, cfg)
        assert client.post("/admin/reload-config").status_code == 200
        assert chat(client, "refactor this").headers["x-homelab-route"] == "brain"
        engines["hands"].release()
        r = fut.result(10)
    assert r.status_code == 200 and r.headers["x-homelab-route"] == "hands"
    st = router.app.runtime.states["hands"]
    assert st.in_flight == 0 and st.max_concurrency == 2       # state survived the reload; slot given back


def test_drain_survives_reload(router, client):
    client.post("/admin/drain/mouth")
    assert client.post("/admin/reload-config").status_code == 200
    assert chat(client, "tell me about owls").headers["x-homelab-reason"] == "mouth_drained"


def test_fifty_reloads_under_load_zero_failures(router, engines):
    cfg_a = yaml.safe_load(open(router.config_path))
    cfg_b = yaml.safe_load(open(router.config_path))
    cfg_b["buckets"]["coding"]["route"] = "brain"
    stop = threading.Event()
    results = []

    def load():
        with httpx.Client(base_url=router.url, timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                text = ("refactor code", "tell me about it", "a screenshot")[i % 3]
                r = chat(c, text, stream=(i % 4 == 0))
                results.append((r.status_code, r.headers.get("x-homelab-route")))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=router.url, timeout=10) as c:
            for i in range(50):
                write(router.config_path, cfg_b if i % 2 == 0 else cfg_a)
                r = c.post("/admin/reload-config")
                assert r.status_code == 200, r.text
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert router.app.runtime.generation == 51
    assert len(results) > 50
    assert all(s == 200 for s, _ in results), [x for x in results if x[0] != 200][:5]
    assert {r for _, r in results} >= {"hands", "brain", "mouth", "eyes"}


def test_sighup_reloads_a_served_router(engines, tmp_path):
    for e in engines.values():
        e.reset()
    port = free_port()
    cfg = rig_config(engines, tmp_path)
    cfg["listen"] = {"host": "127.0.0.1", "port": port}
    path = tmp_path / "served.yaml"
    write(path, cfg)
    proc = subprocess.Popen([sys.executable, "-m", "router_app", "serve", "--config", str(path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, timeout=20, what="router up")
        with httpx.Client(base_url=url, timeout=10) as c:
            assert chat(c, "refactor this").headers["x-homelab-route"] == "hands"
            cfg["buckets"]["coding"]["route"] = "brain"
            write(path, cfg)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: chat(c, "refactor this").headers["x-homelab-route"] == "brain", what="SIGHUP reload")
            cfg["buckets"]["coding"]["route"] = "nowhere"        # invalid: refused, old policy keeps serving
            write(path, cfg)
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            assert proc.poll() is None
            assert chat(c, "refactor this").headers["x-homelab-route"] == "brain"
            assert c.get("/stats").json()["config_generation"] == 2
    finally:
        proc.terminate()
        proc.wait(10)
