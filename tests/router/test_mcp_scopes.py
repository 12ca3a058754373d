"""Key scopes for the MCP bridge (`keys scopes`), the bridge's key check and its `mcp:` config section."""
from __future__ import annotations

import json

import pytest

from access_helpers import make_cfg
from router_app.access import scopes
from router_app.cli import access as cli_access
from router_app.mcpbridge.auth import AuthFailure, KeyVerifier
from router_app.mcpbridge.settings import BridgeConfigInvalid, bridge_settings


def run(capsys, *argv):
    code = cli_access.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_normalize():
    assert scopes.normalize(["admin"]) == ("read", "admin")
    assert scopes.normalize([" read ", "read", ""]) == ("read",)
    with pytest.raises(scopes.ScopeError, match="unknown scope.*write"):
        scopes.normalize(["write"])


def test_scopes_cli_and_verifier(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    c = cfg.source_path
    code, out, _ = run(capsys, "keys", "create", "--config", c, "--app", "agent")
    token = out.strip()
    ver = KeyVerifier(cfg)
    with pytest.raises(AuthFailure) as e:
        ver.verify(token)
    assert e.value.status == 403 and "keys scopes agent" in e.value.message
    assert run(capsys, "keys", "scopes", "--config", c, "agent", "--set", "write")[0] == 2
    code, out, _ = run(capsys, "keys", "scopes", "--config", c, "agent", "--set", "admin", "--json")
    assert code == 0 and json.loads(out) == {"app": "agent", "scopes": ["read", "admin"]}
    assert ver.verify(token).scopes == ("read", "admin")
    code, out, _ = run(capsys, "keys", "rotate", "--config", c, "agent")
    new = out.strip()
    with pytest.raises(AuthFailure) as e:
        ver.verify(token)
    assert e.value.status == 401
    assert ver.verify(new).may("admin")          # scopes belong to the app: rotation keeps them
    code, out, _ = run(capsys, "keys", "scopes", "--config", c, "agent", "--clear")
    assert code == 0 and "(none" in out
    with pytest.raises(AuthFailure):
        ver.verify(new)
    code, _, err = run(capsys, "keys", "scopes", "--config", c, "ghost", "--set", "read")
    assert code == 2 and "no active key" in err
    for bad in (None, "", "Bearer", "hlr_x", "hlr_abc_def"):
        with pytest.raises(AuthFailure) as e:
            ver.verify(bad)
        assert e.value.status == 401
    ver.close()


def test_mcp_section_errors_name_the_key(tmp_path):
    cfg = make_cfg(tmp_path, mcp={"listen": {"port": 0}, "allowed_hosts": "x", "bogus": 1})
    with pytest.raises(BridgeConfigInvalid) as e:
        bridge_settings(cfg)
    paths = {err.path for err in e.value.errors}
    assert {"mcp.listen.port", "mcp.bogus", "mcp.allowed_hosts"} <= paths
    assert bridge_settings(make_cfg(tmp_path)).listen.port == 8092


def test_check_config_reports_the_mcp_section(tmp_path, capsys):
    from router_app.cli.main import main
    cfg = make_cfg(tmp_path, mcp={"listen": {"port": 70000}})
    assert main(["check-config", cfg.source_path]) == 1
    assert "mcp.listen.port" in capsys.readouterr().out
    ok = make_cfg(tmp_path, mcp={"allowed_hosts": ["gw.lan:8092"]})
    assert main(["check-config", ok.source_path]) == 0
