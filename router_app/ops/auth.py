"""Who may call the operational endpoints.

* /admin/*: `Authorization: Bearer <admin key>` when an admin key is configured; without one, loopback clients only.
* /metrics and /stats (app names, usage): the admin key, or a loopback client.

A request that arrived through a reverse proxy on the same host (it carries X-Forwarded-For or Forwarded) is not a
loopback client: Caddy in front of the router must not turn the LAN into localhost.
"""
from __future__ import annotations

import hmac
from typing import Optional

from ..errors import ApiError

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def is_loopback(scope) -> bool:
    client = scope.get("client")
    if not client or client[0] not in LOOPBACK:
        return False
    return not any(k in _PROXY_HEADERS for k, _ in scope["headers"])


def _bearer_ok(scope, key: str) -> bool:
    for k, v in scope["headers"]:
        if k == b"authorization":
            auth = v.decode("latin-1")
            return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), key.encode())
    return False


def check_admin(scope, key: Optional[str]) -> None:
    if key:
        if not _bearer_ok(scope, key):
            raise ApiError(401, "admin endpoints need Authorization: Bearer <admin key>",
                           type="authentication_error", code="invalid_admin_key")
    elif not is_loopback(scope):
        raise ApiError(403, "no admin key is configured: admin endpoints answer loopback clients only",
                       type="permission_error", code="admin_loopback_only")


def check_observer(scope, key: Optional[str]) -> None:
    if is_loopback(scope) or (key and _bearer_ok(scope, key)):
        return
    if key:
        raise ApiError(401, "metrics and stats need Authorization: Bearer <admin key> (or a loopback client)",
                       type="authentication_error", code="invalid_admin_key")
    raise ApiError(403, "no admin key is configured: metrics and stats answer loopback clients only",
                   type="permission_error", code="admin_loopback_only")
