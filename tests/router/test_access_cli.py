"""`homelab-router keys ...` / `usage` against a real SQLite file."""
from __future__ import annotations

import json
import time

import pytest

from router_app.cli import access as cli_access
from router_app.access.store import Store, UsageRow
from access_helpers import make_cfg


def run(capsys, *argv):
    code = cli_access.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_lifecycle(tmp_path, capsys):
    cfg = make_cfg(tmp_path, prices={"mouth": {"input_per_mtok": 2.0, "output_per_mtok": 6.0}})
    c = cfg.source_path
    code, out, err = run(capsys, "keys", "create", "--config", c, "--app", "bot", "--routes", "mouth,eyes",
                         "--rpm", "30", "--tokens-per-day", "5000")
    assert code == 0
    secret = out.strip()
    assert secret.startswith("hlr_") and "shown once" in err
    code, out, err = run(capsys, "keys", "create", "--config", c, "--app", "bot")
    assert code != 0 and "already has an active key" in err
    code, out, err = run(capsys, "keys", "create", "--config", c, "--app", "x", "--routes", "nope")
    assert code != 0 and "unknown route" in err
    code, out, err = run(capsys, "keys", "create", "--config", c, "--app", "x", "--models", "homelab/nope")
    assert code != 0 and "unknown model" in err
    code, out, _ = run(capsys, "keys", "create", "--config", c, "--app", "cam", "--models",
                       "homelab/vision", "--json")
    assert code == 0 and json.loads(out)["models"] == ["homelab/vision"]
    code, out, _ = run(capsys, "keys", "list", "--config", c)
    assert code == 0 and "bot" in out and "cam" in out and "mouth,eyes" in out and secret not in out
    code, out, _ = run(capsys, "keys", "rotate", "--config", c, "bot")
    new = out.strip()
    assert code == 0 and new.startswith("hlr_") and new != secret
    code, out, _ = run(capsys, "keys", "revoke", "--config", c, "cam")
    assert code == 0
    code, out, err = run(capsys, "keys", "revoke", "--config", c, "cam")
    assert code == 1
    code, out, _ = run(capsys, "keys", "list", "--config", c, "--all", "--json")
    rows = json.loads(out)
    assert len(rows) == 3 and sum(1 for r in rows if r["revoked_at"] is None) == 1
    assert "secret" not in out and "digest" not in out

    st = Store(str(tmp_path / "router.sqlite3"))
    now = time.time()
    st.insert_usage([UsageRow(f"r{i}", now, "bot", None, "mouth", "b", 1000, 500, 1500, False, 200, 3.0)
                     for i in range(3)])
    code, out, _ = run(capsys, "usage", "--config", c)
    assert code == 0
    line = [l for l in out.splitlines() if l.startswith("bot")][0].split()
    # APP CALLS TOKENS TODAY LEFT-TODAY LEFT-MONTH COST
    assert line[:6] == ["bot", "3", "4500", "4500", "500", "-"]
    assert float(line[6]) == pytest.approx(3 * (1000 * 2 + 500 * 6) / 1e6)
    assert "You saved $" in out
    code, out, _ = run(capsys, "usage", "--config", c, "--json")
    rep = {d["app"]: d for d in json.loads(out)}
    assert rep["bot"]["calls"] == 3 and rep["bot"]["budget_left_day"] == 500
