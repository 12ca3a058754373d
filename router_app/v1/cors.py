"""CORS for browser clients on /v1/*, for configured origins only (config `cors.allow_origins`, default none;
the schema is `Cors` in router_app/access/config.py).

    cors:
      allow_origins: ["https://chat.home.example"]   # exact origins (scheme://host[:port]); "*" allows any
      max_age_s: 600

* Preflight `OPTIONS /v1/...` from an allowed origin: 204 with Access-Control-Allow-Origin (the origin), -Methods,
  -Headers (the headers the browser asked for) and -Max-Age. No API key is needed for a preflight (browsers never
  send one). From any other origin: 403 with no CORS headers.
* Any other /v1 answer to a request whose Origin is allowed gets Access-Control-Allow-Origin, Vary: Origin and
  Access-Control-Expose-Headers (the x-homelab-* routing headers, x-request-id, retry-after).
* Not configured, or an origin not in the list: no CORS headers at all (the browser blocks the call).
"""
from __future__ import annotations

from ..access.config import Cors

EXPOSE = (b"x-homelab-route, x-homelab-bucket, x-homelab-reason, x-homelab-overhead-ms, x-homelab-structured, "
          b"x-request-id, retry-after")
METHODS = b"GET, POST, OPTIONS"


def _origin(scope) -> bytes | None:
    for k, v in scope["headers"]:
        if k == b"origin":
            return v
    return None


def _allowed(cors: Cors, origin: bytes | None) -> bool:
    if not origin:
        return False
    o = origin.decode("latin-1")
    return "*" in cors.allow_origins or o in cors.allow_origins


def _allow_value(cors: Cors, origin: bytes) -> bytes:
    return b"*" if "*" in cors.allow_origins else origin


async def preflight(cors: Cors, scope, send) -> None:
    origin = _origin(scope)
    if not _allowed(cors, origin):
        body = (b'{"error":{"message":"this origin is not allowed (cors.allow_origins)",'
                b'"type":"permission_error","param":null,"code":"cors_origin_forbidden"}}')
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})
        return
    asked = next((v for k, v in scope["headers"] if k == b"access-control-request-headers"), None)
    hdrs = [(b"access-control-allow-origin", _allow_value(cors, origin)), (b"vary", b"Origin"),
            (b"access-control-allow-methods", METHODS),
            (b"access-control-allow-headers", asked or b"authorization, content-type"),
            (b"access-control-max-age", str(cors.max_age_s).encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 204, "headers": hdrs})
    await send({"type": "http.response.body", "body": b""})


def wrap_send(cors: Cors, scope, send):
    """`send` with CORS headers added to the response start when the request's Origin is allowed."""
    origin = _origin(scope)
    if not _allowed(cors, origin):
        return send
    extra = [(b"access-control-allow-origin", _allow_value(cors, origin)), (b"vary", b"Origin"),
             (b"access-control-expose-headers", EXPOSE)]

    async def send2(msg):
        if msg["type"] == "http.response.start":
            msg = dict(msg, headers=list(msg.get("headers", [])) + extra)
        await send(msg)
    return send2
