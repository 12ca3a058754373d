"""Per-app keys on the admin API (issue 13 item 4): ``admin`` scope for every /admin/* call, ``read`` for the GETs
(not /admin/keys), none -> 403 OpenAI-shaped; each call audited with the app name (admin-audit.jsonl, and a command's
requested_by). A real router process; keys and scopes made with the real CLI against its store."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from hub_rig import ROOT, env


def cli(rig, *argv) -> str:
    out = subprocess.run([sys.executable, "-m", "router_app", *argv, "--config", str(rig.cfg_path)] if argv[0] != "keys"
                         else [sys.executable, "-m", "router_app", "keys", argv[1], "--config", str(rig.cfg_path),
                               *argv[2:]], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def call(rig, method, path, token, **kw):
    return httpx.request(method, rig.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw)


def assert_error(r, status, code):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "type" in err and "param" in err


def test_app_keys_with_scopes_on_the_admin_api(rig):
    ops = cli(rig, "keys", "create", "--app", "ops-bot")
    viewer = cli(rig, "keys", "create", "--app", "grafana")
    plain = cli(rig, "keys", "create", "--app", "chat")
    cli(rig, "keys", "scopes", "ops-bot", "--set", "admin")
    cli(rig, "keys", "scopes", "grafana", "--set", "read")
    time.sleep(1.0)     # the router re-reads keys changed by another process within ~0.5 s

    # admin scope: reads and writes
    assert call(rig, "GET", "/admin/nodes", ops).status_code == 200
    assert call(rig, "GET", "/admin/keys", ops).status_code == 200
    r = call(rig, "POST", "/admin/recover-cuda", ops, json={"node": "gpu-a", "ttl_s": 30})
    assert r.status_code == 202, r.text
    assert r.json()["requested_by"] == "app:ops-bot"
    d = call(rig, "POST", "/admin/drain/eyes", ops)
    assert d.status_code == 200 and d.json()["drained"] is True
    assert call(rig, "POST", "/admin/undrain/eyes", ops).status_code == 200

    # read scope: GETs yes (but not /admin/keys), writes no
    for path in ("/admin/nodes", "/admin/upstreams", "/admin/events", "/admin/commands", "/admin/command-kinds"):
        assert call(rig, "GET", path, viewer).status_code == 200, path
    assert_error(call(rig, "GET", "/admin/keys", viewer), 403, "scope_missing")
    refused = call(rig, "POST", "/admin/drain/eyes", viewer)
    assert_error(refused, 403, "scope_missing")
    assert "admin" in refused.json()["error"]["message"] and "keys scopes grafana" in refused.json()["error"]["message"]
    assert_error(call(rig, "POST", "/admin/recover-cuda", viewer, json={"node": "gpu-a"}), 403, "scope_missing")
    assert call(rig, "GET", "/admin/upstreams", ops).json()["routes"]["eyes"]["drained"] is False

    # a key without scope: 403 everywhere; unknown and revoked keys: 401
    assert_error(call(rig, "GET", "/admin/nodes", plain), 403, "scope_missing")
    assert_error(call(rig, "GET", "/admin/nodes", plain[:-4] + "AAAA"), 401, "invalid_api_key")
    cli(rig, "keys", "revoke", "grafana")
    time.sleep(1.0)
    assert_error(call(rig, "GET", "/admin/nodes", viewer), 401, "revoked_api_key")
    # a scope change applies to the next call
    cli(rig, "keys", "scopes", "ops-bot", "--set", "read")
    assert_error(call(rig, "POST", "/admin/drain/eyes", ops), 403, "scope_missing")
    # the admin key still works, and /v1 keys are unchanged by all this
    assert rig.admin.get("/admin/nodes").status_code == 200

    # audit: one line per admitted admin call and per scope refusal, with the app's name, never the key
    time.sleep(1.5)     # logs are flushed about once a second
    lines = [json.loads(x) for x in (rig.tmp / "logs" / "admin-audit.jsonl").read_text().splitlines()]
    assert {"who": "app:ops-bot", "method": "POST", "path": "/admin/recover-cuda", "outcome": "allowed"}.items() \
        <= next(x for x in lines if x["path"] == "/admin/recover-cuda").items()
    assert any(x["who"] == "app:grafana" and x["outcome"] == "refused" and x["error"] == "scope_missing"
               and x["path"] == "/admin/drain/eyes" for x in lines)
    assert any(x["who"] == "app:chat" and x["outcome"] == "refused" for x in lines)
    assert any(x["who"].startswith("admin-key") for x in lines)
    text = (rig.tmp / "logs" / "admin-audit.jsonl").read_text()
    assert ops not in text and viewer not in text and "hlr_" not in text
    ev = rig.events(kind="command_queued")
    assert any(e.get("requested_by") == "app:ops-bot" for e in ev)
