"""Who may call the operational endpoints.

* /admin/*: `Authorization: Bearer <admin key>` when an admin key is configured; without one, loopback clients only.
  A per-app key (`hlr_...`) is accepted too when its app has a scope (router_app/access/adminkeys.py): ``admin`` for
  every admin endpoint, ``read`` for the read-only ones (GET, except /admin/keys, which names every app and its
  usage). A valid key without the needed scope gets 403 ``scope_missing``; an unknown or revoked one 401.
* /metrics and /stats (app names, usage): the admin key, or a loopback client.

A request that arrived through a reverse proxy on the same host (it carries X-Forwarded-For or Forwarded) is not a
loopback client: Caddy in front of the router must not turn the LAN into localhost.
"""
from __future__ import annotations

import hmac
from typing import Any, Optional

from ..access import adminkeys
from ..errors import ApiError

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def is_loopback(scope) -> bool:
    client = scope.get("client")
    if not client or client[0] not in LOOPBACK:
        return False
    return not any(k in _PROXY_HEADERS for k, _ in scope["headers"])


def _bearer(scope) -> Optional[str]:
    for k, v in scope["headers"]:
        if k == b"authorization":
            auth = v.decode("latin-1")
            return auth[7:].strip() if auth.startswith("Bearer ") else None
    return None


def _bearer_ok(scope, key: str) -> bool:
    tok = _bearer(scope)
    return tok is not None and hmac.compare_digest(tok.encode(), key.encode())


READ_ONLY_EXCEPT = frozenset({"/admin/keys"})   # GETs that still need ``admin``: they name every app and its usage


def scope_needed(method: str, path: str) -> str:
    return "read" if method in ("GET", "HEAD") and path not in READ_ONLY_EXCEPT else "admin"


def check_admin(scope, key: Optional[str], access: Any = None) -> str:
    """Raises an OpenAI-shaped ApiError, or returns who is calling: 'admin-key', 'loopback' or 'app:<name>'."""
    if key and _bearer_ok(scope, key):
        return "admin-key"
    tok = _bearer(scope)
    if tok and access is not None and adminkeys.looks_like_app_key(tok):
        try:
            app = adminkeys.verify(access, tok)
        except adminkeys.KeyRefused as exc:
            raise ApiError(401, f"admin endpoints: {exc.message}", type="authentication_error",
                           code=exc.code) from None
        need = scope_needed(scope.get("method", "GET"), scope.get("path", ""))
        if need not in app.scopes:
            have = ", ".join(app.scopes) or "no scope"
            err = ApiError(403, f"{scope.get('method')} {scope.get('path')} needs the {need!r} scope; app "
                                f"{app.app!r} has {have} (grant it with 'homelab-router keys scopes {app.app} "
                                f"--set {need}')", type="permission_error", code="scope_missing")
            err.principal = f"app:{app.app}"    # type: ignore[attr-defined]  (for the admin audit line)
            raise err
        return f"app:{app.app}"
    if key:
        raise ApiError(401, "admin endpoints need Authorization: Bearer <admin key> (or a per-app key with a scope)",
                       type="authentication_error", code="invalid_admin_key")
    if not is_loopback(scope):
        raise ApiError(403, "no admin key is configured: admin endpoints answer loopback clients only (or a "
                            "per-app key with a scope)", type="permission_error", code="admin_loopback_only")
    return "loopback"


def check_observer(scope, key: Optional[str]) -> None:
    if is_loopback(scope) or (key and _bearer_ok(scope, key)):
        return
    if key:
        raise ApiError(401, "metrics and stats need Authorization: Bearer <admin key> (or a loopback client)",
                       type="authentication_error", code="invalid_admin_key")
    raise ApiError(403, "no admin key is configured: metrics and stats answer loopback clients only",
                   type="permission_error", code="admin_loopback_only")
