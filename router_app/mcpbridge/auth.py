"""Who may call the bridge, and the audit line of every call.

* Callers present the router's per-app keys (`Authorization: Bearer hlr_...`), checked against the same SQLite store
  the router uses (salted digest, `hmac.compare_digest`, revoked keys refused). The key rows are cached and re-read
  when another process commits to the store (`PRAGMA data_version`), so `keys revoke` / `keys scopes` take effect on
  the next call.
* A key needs the ``read`` scope for the read-only tools and ``admin`` for the rest (router_app/access/scopes.py).
  There is no anonymous access, whatever the router's `auth:` mode.
* Every tool call (allowed, refused or failed) is one line of ``<log_dir>/mcp-audit.jsonl``, rotated like the
  router's audit log (`audit_log.max_bytes` / `.keep`): time, app, key id, tool, transport, dry_run, outcome,
  error, latency. Arguments are logged by name only (a file path or model name may be sensitive), never the key.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import orjson

from ..access import scopes as sc
from ..access.audit import RotatingJsonl
from ..access.config import resolve_store_path, settings_from
from ..access.records import _iso_ms
from ..access.store import KeyRecord, Store, split_token
from ..decision.config import RouterConfig


@dataclass(frozen=True)
class Principal:
    app: str
    key_id: str
    scopes: tuple[str, ...]
    token: str

    def may(self, scope: str) -> bool:
        return scope in self.scopes


class AuthFailure(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bearer_of(headers: Optional[Mapping[str, str]]) -> Optional[str]:
    if not headers:
        return None
    v = headers.get("authorization") or headers.get("Authorization")
    if not v or not v.startswith("Bearer "):
        return None
    return v[7:].strip() or None


class KeyVerifier:
    def __init__(self, cfg: RouterConfig):
        self.store = Store(resolve_store_path(settings_from(cfg), cfg))
        sc.ensure_table(self.store.conn)
        self._lock = threading.Lock()
        self._version: Optional[int] = None
        self._keys: dict[str, KeyRecord] = {}
        self._scopes: dict[str, tuple[str, ...]] = {}

    def _refresh(self) -> None:
        v = self.store.data_version()
        if v == self._version:
            return
        with self.store._lock:
            scopes = sc.all_scopes(self.store.conn)
        self._keys = {k.kid: k for k in self.store.list_keys()}
        self._scopes, self._version = scopes, v

    def verify(self, token: Optional[str]) -> Principal:
        if not token:
            raise AuthFailure(401, "missing_api_key", "the bridge needs Authorization: Bearer <per-app key>")
        parts = split_token(token)
        with self._lock:
            self._refresh()
            rec = self._keys.get(parts[0]) if parts else None
            scopes = self._scopes.get(rec.app, ()) if rec else ()
        if rec is None or not rec.verify(token):
            raise AuthFailure(401, "invalid_api_key", "unknown or revoked key")
        if not scopes:
            raise AuthFailure(403, "scope_missing", f"app {rec.app!r} has no MCP scope; grant one with "
                                                    f"'homelab-router keys scopes {rec.app} --set read' (or admin)")
        return Principal(rec.app, rec.kid, scopes, token)

    def close(self) -> None:
        self.store.close()


class AuditLog:
    def __init__(self, cfg: RouterConfig):
        self.file = RotatingJsonl(os.path.join(cfg.log_dir, "mcp-audit.jsonl"),
                                  cfg.audit_log.max_bytes, cfg.audit_log.keep)

    def record(self, *, tool: str, principal: Optional[Principal], transport: Optional[str], args: Any,
               outcome: str, t0: float, error: Optional[str] = None) -> None:
        rec: dict[str, Any] = {
            "time": _iso_ms(time.time()), "source": "mcp", "tool": tool,
            "app": principal.app if principal else None, "key_id": principal.key_id if principal else None,
            "transport": transport, "outcome": outcome,
            "dry_run": args.get("dry_run") if isinstance(args, dict) else None,
            "args": sorted(args) if isinstance(args, dict) else None,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
        }
        if error:
            rec["error"] = error[:500]
        try:
            self.file.write(orjson.dumps(rec))
        except OSError:     # an unwritable log must not break the session; the unit's journal shows it
            pass

    def close(self) -> None:
        self.file.close()
