"""Per-app keys on the admin API: an app whose key carries the ``admin`` scope may call every /admin/* endpoint,
one with ``read`` the read-only ones (router_app/ops/auth.py decides which). Scopes are those of
router_app/access/scopes.py (``homelab-router keys scopes APP --set read|admin``), the same the MCP bridge uses.

The key is checked against the router's in-memory key snapshot (one hash, one compare, revoked keys refused); the
scopes are read from the store on each admin call (admin calls are rare, and a ``keys scopes`` change in another
process then applies to the very next call). Nothing here runs on the /v1 path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from . import scopes as sc
from .store import split_token


@dataclass(frozen=True)
class AdminApp:
    app: str
    key_id: str
    scopes: tuple[str, ...]


class KeyRefused(Exception):
    """An hlr_ key that does not verify (unknown, wrong secret, revoked)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message, self.code = message, code


def looks_like_app_key(token: str) -> bool:
    return split_token(token) is not None


def verify(access: Any, token: str) -> AdminApp:
    """The app behind a per-app key, with its scopes (possibly none). KeyRefused when the key does not verify."""
    parts = split_token(token)
    snap = getattr(access, "_snap", None)
    store = getattr(access, "store", None)
    if parts is None or snap is None or store is None:
        raise KeyRefused("unknown API key", "invalid_api_key")
    active, revoked = snap
    ent = active.get(parts[0])
    if ent is None or not ent[0].verify(token):
        old = revoked.get(parts[0])
        if old is not None and old.verify(token):
            raise KeyRefused(f"the key of app '{old.app}' has been revoked", "revoked_api_key")
        raise KeyRefused("unknown API key", "invalid_api_key")
    rec = ent[0]
    with store._lock:
        scopes = sc.get_scopes(store.conn, rec.app)
    return AdminApp(rec.app, rec.kid, scopes)


def principal_label(app: Optional[AdminApp]) -> str:
    return f"app:{app.app}" if app else "admin-key"
