"""list_files / read_file: the agent's file rules (router_app/agent/files.py) on a real directory tree, the hub's
typed arguments, and the whole path end to end (a real router process with the hub, a real homelab-agent process)."""
from __future__ import annotations

import base64
import os

import pytest

from router_app.agent import files
from router_app.hub import commands as cmds

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the secret rule is about root-owned files")


@pytest.fixture()
def tree(tmp_path):
    """allowed/: app.conf, blob.bin, locked.conf (0600), db.env, sub/, link-in -> app.conf, link-out -> ../outside,
    fifo; outside/: private.txt. The allowlist: allowed/ and outside's sibling file note.txt (a file entry)."""
    a, o = tmp_path / "allowed", tmp_path / "outside"
    a.mkdir()
    o.mkdir()
    (a / "app.conf").write_text("listen = 8000\nname = ünïcode\n")
    (a / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (a / "locked.conf").write_text("token=hunter2\n")
    os.chmod(a / "locked.conf", 0o600)
    (a / "db.env").write_text("PASSWORD=x\n")
    os.chmod(a / "db.env", 0o644)
    (a / "sub").mkdir()
    (a / "sub" / "deep.txt").write_text("deep\n")
    os.symlink(a / "app.conf", a / "link-in")
    os.symlink(o / "private.txt", a / "link-out")
    os.symlink(o, a / "dir-out")
    os.mkfifo(a / "fifo")
    (o / "private.txt").write_text("not yours\n")
    (tmp_path / "note.txt").write_text("a single allowlisted file\n")
    return tmp_path, [str(a), str(tmp_path / "note.txt")]


def test_read_an_allowlisted_file(tree):
    base, allow = tree
    out = files.read_file(f"{base}/allowed/app.conf", allow, 1000)
    assert out["encoding"] == "utf-8" and out["content"] == "listen = 8000\nname = ünïcode\n"
    assert out["size"] == len("listen = 8000\nname = ünïcode\n".encode()) and not out["truncated"]
    assert out["mtime"] == os.stat(f"{base}/allowed/app.conf").st_mtime
    assert files.read_file(f"{base}/note.txt", allow)["content"].startswith("a single")
    assert files.read_file(f"{base}/allowed/sub/deep.txt", allow)["content"] == "deep\n"
    inside = files.read_file(f"{base}/allowed/link-in", allow)             # a symlink that stays inside: fine
    assert inside["real_path"] == f"{base}/allowed/app.conf"


def test_truncation_and_binary_content(tree):
    base, allow = tree
    out = files.read_file(f"{base}/allowed/app.conf", allow, 6)
    assert out["content"] == "listen" and out["truncated"] and out["bytes"] == 6
    blob = files.read_file(f"{base}/allowed/blob.bin", allow, 300)
    assert blob["encoding"] == "base64" and base64.b64decode(blob["content"]) == bytes(range(256)) + bytes(range(44))
    assert blob["size"] == 1024 and blob["truncated"]
    with pytest.raises(files.FileRefused, match="max_bytes"):
        files.read_file(f"{base}/allowed/app.conf", allow, files.MAX_READ + 1)


@pytest.mark.parametrize("rel,why", [
    ("outside/private.txt", "outside this node's allowlist"),
    ("allowed/link-out", "symlink escape"),
    ("allowed/dir-out/private.txt", "symlink escape"),
    ("allowed/../outside/private.txt", "'..'"),
    ("allowed//app.conf", "not normalized"),
    ("allowed/db.env", "looks like a secret"),
    ("allowed/fifo", "not a regular file"),
    ("allowed/sub", "not a regular file"),
])
def test_refusals(tree, rel, why):
    base, allow = tree
    with pytest.raises(files.FileRefused, match=why):
        files.read_file(f"{base}/{rel}", allow)
    with pytest.raises(files.FileRefused, match="must be absolute"):
        files.read_file("allowed/app.conf", allow)


@ROOT_ONLY
def test_root_owned_0600_is_secret_looking(tree):
    base, allow = tree
    with pytest.raises(files.FileRefused, match="looks like a secret .*mode 0o600"):
        files.read_file(f"{base}/allowed/locked.conf", allow)


def test_list_a_directory_marks_what_cannot_be_read(tree):
    base, allow = tree
    out = files.list_files(f"{base}/allowed", allow)
    e = {os.path.basename(x["path"]): x for x in out["entries"]}
    assert out["type"] == "dir" and out["count"] == len(e) == 9
    assert e["app.conf"]["type"] == "file" and e["app.conf"]["size"] > 0 and "refused" not in e["app.conf"]
    assert e["sub"]["type"] == "dir" and "refused" not in e["sub"]
    assert "symlink escape" in e["link-out"]["refused"] and "symlink escape" in e["dir-out"]["refused"]
    assert "secret" in e["db.env"]["refused"] and e["fifo"]["refused"] == "not a regular file"
    if os.geteuid() == 0:
        assert "secret-looking" in e["locked.conf"]["refused"]
    one = files.list_files(f"{base}/note.txt", allow)
    assert one["type"] == "file" and one["entries"][0]["size"] == len("a single allowlisted file\n")
    with pytest.raises(files.FileRefused, match="outside"):
        files.list_files(f"{base}/outside", allow)
    with pytest.raises(files.FileRefused, match="symlink escape"):
        files.list_files(f"{base}/allowed/dir-out", allow)


def test_agent_run_turns_refusals_into_a_refused_status(tree):
    base, allow = tree
    ok = files.run({"kind": "read_file", "args": {"path": f"{base}/allowed/app.conf"}}, allow)
    assert ok["status"] == "succeeded" and ok["content"].startswith("listen")
    bad = files.run({"kind": "read_file", "args": {"path": f"{base}/outside/private.txt"}}, allow)
    assert bad == {"status": "refused", "summary": bad["summary"]} and "outside" in bad["summary"]
    assert files.run({"kind": "list_files", "args": {"path": "/etc"}}, [])["status"] == "refused"   # empty list


@pytest.mark.parametrize("kind,args,param", [
    ("read_file", {}, "args.path"),
    ("read_file", {"path": "etc/hosts"}, "args.path"),
    ("read_file", {"path": "/etc/../etc/shadow"}, "args.path"),
    ("read_file", {"path": 3}, "args.path"),
    ("read_file", {"path": "/etc/hosts", "max_bytes": "10"}, "args.max_bytes"),
    ("read_file", {"path": "/etc/hosts", "max_bytes": True}, "args.max_bytes"),
    ("read_file", {"path": "/etc/hosts", "max_bytes": 0}, "args.max_bytes"),
    ("read_file", {"path": "/etc/hosts", "max_bytes": files.MAX_READ + 1}, "args.max_bytes"),
    ("list_files", {"path": "/etc", "max_bytes": 5}, "args.max_bytes"),
    ("list_files", {"path": "/etc/"}, "args.path"),
])
def test_typed_arguments(kind, args, param):
    with pytest.raises(cmds.CommandRefused) as exc:
        cmds.validate(kind, args)
    assert exc.value.param == param
    assert cmds.validate("read_file", {"path": "/etc/hosts", "max_bytes": 10}) == {"path": "/etc/hosts",
                                                                                  "max_bytes": 10}


# ---------------------------------------------------------------------------------------------------- end to end
def _run(rig, body: dict) -> tuple[int, dict]:
    r = rig.admin.post("/admin/commands", json=body)
    if r.status_code != 202:
        return r.status_code, r.json()
    cid = r.json()["id"]
    return 202, rig.wait(lambda: (c := rig.command(cid))["status"] in ("succeeded", "failed", "refused") and c,
                         timeout=20, what=f"{body['kind']} result")


def test_end_to_end_through_the_hub_and_a_real_agent(rig, tree):
    base, allow = tree
    rig.infra_paths["gpu-a"] = allow
    rig.start_agent("gpu-a")
    n = rig.wait(lambda: (x := rig.node("gpu-a"))["state"] == "healthy" and x, what="gpu-a healthy")
    assert n["infra_paths"] == allow                          # the allowlist rides on the heartbeat

    st, cmd = _run(rig, {"kind": "read_file", "node": "gpu-a", "args": {"path": f"{base}/allowed/app.conf"}})
    assert st == 202 and cmd["status"] == "succeeded", cmd
    assert cmd["result"]["content"].startswith("listen = 8000") and cmd["result"]["encoding"] == "utf-8"
    assert cmd["requested_by"].startswith("admin-key@")      # audited like every command
    st, cmd = _run(rig, {"kind": "list_files", "node": "gpu-a", "args": {"path": f"{base}/allowed"}})
    assert cmd["status"] == "succeeded" and len(cmd["result"]["entries"]) == 9

    # outside the reported allowlist: the hub refuses before anything is queued
    st, err = _run(rig, {"kind": "read_file", "node": "gpu-a", "args": {"path": f"{base}/outside/private.txt"}})
    assert st == 403 and err["error"]["code"] == "path_not_allowed" and err["error"]["param"] == "args.path"
    st, err = _run(rig, {"kind": "read_file", "node": "gpu-a", "args": {"path": f"{base}/allowed/../outside/x"}})
    assert st == 400 and err["error"]["code"] == "command_refused" and "'..'" in err["error"]["message"]
    # textually inside, but a symlink leads out: the agent refuses on the realpath
    st, cmd = _run(rig, {"kind": "read_file", "node": "gpu-a", "args": {"path": f"{base}/allowed/link-out"}})
    assert cmd["status"] == "refused" and "symlink escape" in cmd["result"]["summary"]
    assert "not yours" not in str(cmd)
    # a node without a connected agent: refused at once, nothing waits in the queue
    st, err = _run(rig, {"kind": "list_files", "node": "gpu-b", "args": {"path": "/etc"}})
    assert st == 409 and err["error"]["code"] == "node_offline"
    assert not rig.admin.get("/admin/commands", params={"node": "gpu-b"}).json()["commands"]
    refused = [e for e in rig.events(kind="command_refused")]
    assert any("outside the infra allowlist" in e["reason"] for e in refused), refused
    kinds = [e["kind"] for e in rig.events(node="gpu-a")]
    assert "command_succeeded" in kinds and "command_refused" in kinds


def test_cli_queues_a_typed_read(rig, tree):
    import json
    import subprocess
    import sys

    from hub_rig import ADMIN_KEY, ROOT, env
    base, allow = tree
    rig.infra_paths["gpu-a"] = allow
    rig.start_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="gpu-a healthy")

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "router_app", "commands", *a, "--url", rig.url, "--json"],
                              cwd=ROOT, env=dict(env(), HOMELAB_ROUTER_ADMIN_KEY=ADMIN_KEY), capture_output=True,
                              text=True, timeout=60)
    r = cli("--kind", "read_file", "--node", "gpu-a", "--arg", f"path={base}/allowed/app.conf",
            "--arg", "max_bytes:=6")
    assert r.returncode == 0, r.stderr
    cid = json.loads(r.stdout)["id"]
    done = rig.wait(lambda: (c := rig.command(cid))["status"] == "succeeded" and c, what="read_file via the CLI")
    assert done["args"] == {"path": f"{base}/allowed/app.conf", "max_bytes": 6}
    assert done["result"]["content"] == "listen"
    bad = cli("--kind", "read_file", "--node", "gpu-a", "--arg", f"path={base}/allowed/app.conf",
              "--arg", "max_bytes=6")
    assert bad.returncode == 1 and "args.max_bytes must be an int" in bad.stderr
