"""``homelab-router keys scopes APP [--set read,admin | --clear]``: what an app's key may do beyond /v1.

See router_app/access/scopes.py: ``read`` opens the read-only MCP tools, ``admin`` every MCP tool.
"""
from __future__ import annotations

import argparse
import json

from ..access import scopes as sc


def cmd_scopes(a: argparse.Namespace) -> int:
    from .access import _err, _load, _open
    cfg = _load(a.config)
    store = _open(cfg)
    try:
        if store.get_active(a.name) is None:
            return _err(f"app {a.name!r} has no active key (create one with 'keys create --app {a.name}')")
        if a.set is not None or a.clear:
            try:
                got = sc.set_scopes(store.conn, a.name, [] if a.clear else a.set.split(","))
            except sc.ScopeError as e:
                return _err(str(e))
        else:
            with store._lock:
                got = sc.get_scopes(store.conn, a.name)
    finally:
        store.close()
    if a.json:
        print(json.dumps({"app": a.name, "scopes": list(got)}))
    else:
        print(f"{a.name}: {', '.join(got) if got else '(none: /v1 only)'}")
    return 0


def register(ksub, common) -> None:
    p = ksub.add_parser("scopes", help="show or set an app's scopes (read, admin) for the MCP bridge")
    common(p)
    p.add_argument("name", help="app name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--set", metavar="SCOPES", help="comma-separated: read, admin (admin implies read)")
    g.add_argument("--clear", action="store_true", help="remove every scope (the key keeps /v1 access)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_scopes)
