"""`homelab-router keys ensure`: an app's key kept in a 0600 environment file, idempotently, against a real SQLite
store (the router's own Store) and, once, the installed console script in a subprocess."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from access_helpers import make_cfg
from router_app.access.store import Store
from router_app.cli.main import main as cli_entry
from router_app.cli.ensure import read_env_file

NAMES = ["OPENAI_API_KEYS", "RAG_OPENAI_API_KEY"]


def ensure(capsys, cfg, env_file, *extra, app="open-webui"):
    argv = ["keys", "ensure", "--config", cfg.source_path, "--app", app, "--env-file", str(env_file)]
    for n in NAMES:
        argv += ["--env-name", n]
    code = cli_entry(argv + list(extra))
    out, err = capsys.readouterr()
    return code, out, err


def active(tmp_path, app="open-webui"):
    st = Store(str(tmp_path / "router.sqlite3"))
    try:
        return st.get_active(app)
    finally:
        st.close()


def test_creates_then_unchanged_then_rotates_when_the_files_key_was_revoked(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    env = tmp_path / "router-key.env"
    code, out, err = ensure(capsys, cfg, env, "--rpm", "120")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["changed"] is True and rep["action"] == "created" and rep["app"] == "open-webui"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and env.stat().st_uid == os.getuid()
    vals = read_env_file(str(env))
    assert set(vals) == set(NAMES) and len(set(vals.values())) == 1
    token = vals[NAMES[0]]
    assert token not in out and token not in err          # the secret is never printed
    rec = active(tmp_path)
    assert rec.kid == rep["key_id"] and rec.verify(token) and rec.rpm == 120

    before = env.stat()
    code, out, err = ensure(capsys, cfg, env, "--rpm", "120")
    assert code == 0, err
    assert json.loads(out) == {"app": "open-webui", "key_id": rec.kid, "changed": False, "action": "unchanged"}
    after = env.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)   # not even rewritten

    assert cli_entry(["keys", "revoke", "--config", cfg.source_path, "open-webui"]) == 0
    capsys.readouterr()
    code, out, err = ensure(capsys, cfg, env, "--rpm", "60")
    rep = json.loads(out)
    assert code == 0 and rep["changed"] is True and rep["action"] == "created"
    new = read_env_file(str(env))[NAMES[0]]
    assert new != token and active(tmp_path).verify(new) and active(tmp_path).rpm == 60
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_a_file_that_lost_its_key_gets_a_new_one_and_the_old_active_key_stops(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    env = tmp_path / "router-key.env"
    assert ensure(capsys, cfg, env)[0] == 0
    old = active(tmp_path)
    env.write_text("OPENAI_API_KEYS=hlr_000000000000_not-the-key\nRAG_OPENAI_API_KEY=hlr_000000000000_not-the-key\n")
    code, out, _ = ensure(capsys, cfg, env)
    rep = json.loads(out)
    assert code == 0 and rep["action"] == "rotated" and rep["key_id"] != old.kid
    st = Store(str(tmp_path / "router.sqlite3"))
    try:
        keys = {k.kid: k for k in st.list_keys(include_revoked=True)}
    finally:
        st.close()
    assert not keys[old.kid].active and keys[rep["key_id"]].active
    assert active(tmp_path).verify(read_env_file(str(env))[NAMES[0]])
    assert len(list(tmp_path.glob(".router-key.*"))) == 0          # no temporary file left behind


def test_right_key_but_loose_mode_or_missing_name_is_rewritten_without_a_new_key(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    env = tmp_path / "router-key.env"
    assert ensure(capsys, cfg, env)[0] == 0
    kid = active(tmp_path).kid
    token = read_env_file(str(env))[NAMES[0]]
    os.chmod(env, 0o644)
    code, out, _ = ensure(capsys, cfg, env)
    assert code == 0 and json.loads(out)["action"] == "rewritten" and json.loads(out)["changed"] is True
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and active(tmp_path).kid == kid
    env.write_text(f"OPENAI_API_KEYS={token}\n")
    os.chmod(env, 0o600)
    code, out, _ = ensure(capsys, cfg, env)
    assert code == 0 and json.loads(out)["action"] == "rewritten"
    assert read_env_file(str(env)) == dict.fromkeys(NAMES, token) and active(tmp_path).kid == kid


@pytest.mark.parametrize("argv,message", [
    (["--app", "open webui!"], "invalid app name 'open webui!'"),
    (["--app", "owui", "--env-name", "9BAD"], "invalid --env-name '9BAD'"),
    (["--app", "owui", "--routes", "nope"], "unknown route"),
    (["--app", "owui", "--models", "homelab/nope"], "unknown model name"),
])
def test_bad_input_is_a_clear_error_and_touches_nothing(tmp_path, capsys, argv, message):
    cfg = make_cfg(tmp_path)
    env = tmp_path / "router-key.env"
    code = cli_entry(["keys", "ensure", "--config", cfg.source_path, "--env-file", str(env), *argv])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and out == ""
    assert not env.exists()
    st = Store(str(tmp_path / "router.sqlite3"))
    try:
        assert st.list_keys(include_revoked=True) == []
    finally:
        st.close()


def test_env_file_in_a_missing_directory_is_refused(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    code, out, err = ensure(capsys, cfg, tmp_path / "nope" / "router-key.env")
    assert code == 2 and "does not exist" in err


def test_console_script_in_a_subprocess_prints_no_secret(tmp_path):
    cfg = make_cfg(tmp_path)
    env = tmp_path / "k.env"
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "router_app.cli.main", "keys", "ensure", "--config", cfg.source_path,
           "--app", "open-webui", "--env-file", str(env)]
    envv = {**os.environ, "PYTHONPATH": str(repo)}
    first = subprocess.run(cmd, capture_output=True, text=True, env=envv, timeout=60)
    second = subprocess.run(cmd, capture_output=True, text=True, env=envv, timeout=60)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    token = read_env_file(str(env))["OPENAI_API_KEY"]
    assert token.startswith("hlr_")
    for p in (first, second):
        assert token not in p.stdout and token not in p.stderr
    assert json.loads(first.stdout)["changed"] is True and json.loads(second.stdout)["changed"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the role runs it as root)")
def test_as_root_the_store_is_touched_as_its_owner_and_the_file_is_roots(tmp_path, capsys):
    import shutil
    import tempfile
    top = Path(tempfile.mkdtemp(prefix="ensure-root-"))    # /tmp/...: traversable by the store's owner
    try:
        os.chmod(top, 0o755)
        state = top / "state"
        state.mkdir(mode=0o750)
        os.chown(state, 65534, 65534)                         # nobody: stands in for homelab-router
        cfg = make_cfg(tmp_path, store_path=str(state / "router.sqlite3"))
        env = tmp_path / "router-key.env"
        code, out, err = ensure(capsys, cfg, env)
        assert code == 0, err
        assert os.geteuid() == 0 and os.getegid() == 0
        owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in state.iterdir()}
        assert owners and all(o == (65534, 65534) for o in owners.values()), owners
        assert (env.stat().st_uid, stat.S_IMODE(env.stat().st_mode)) == (0, 0o600)
        assert json.loads(ensure(capsys, cfg, env)[1])["changed"] is False
    finally:
        shutil.rmtree(top)


def test_replacing_a_key_is_one_transaction(tmp_path, monkeypatch):
    """create_key(replace=True), what `keys ensure` uses: the revoke and the new key commit together; when the insert
    fails, the old key is still the active one (before, a failed create after the revoke left the app with none)."""
    st = Store(str(tmp_path / "router.sqlite3"))
    try:
        old, _ = st.create_key("open-webui")
        clash = Store._new_secret()
        monkeypatch.setattr(Store, "_new_secret", staticmethod(lambda: (old.kid, *clash[1:])))   # primary key clash
        with pytest.raises(Exception):
            st.create_key("open-webui", replace=True)
        assert st.get_active("open-webui").kid == old.kid
        monkeypatch.undo()
        new, _ = st.create_key("open-webui", replace=True)
        keys = st.list_keys(include_revoked=True)
        assert new.kid != old.kid and [k.kid for k in keys if k.active] == [new.kid] and len(keys) == 2
    finally:
        st.close()
