"""The bridge's ASGI app: Streamable HTTP at /mcp, legacy SSE at /sse (+ /messages/), /healthz; and `serve()`.

Both transports come from the SDK (`MCPServer.streamable_http_app()` / `.sse_app()`) over the same server object,
so a tool is defined once. In front of them a small ASGI gate answers 401/403 (JSON) before any session is opened
when the key is missing, unknown or has no scope; the per-tool scope check and the audit line are in
tools.GateMiddleware. The SDK's DNS-rebinding protection stays on: loopback Host headers plus `mcp.allowed_hosts`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from .. import __version__
from ..ops import readfirst
from .auth import AuditLog, AuthFailure, KeyVerifier, bearer_of
from .services import Hooks, Services
from .tools import GateMiddleware, register_tools

BODY_LIMIT = 32 << 20         # read to its end before an early answer (router_app/ops/readfirst.py); as Caddy
INSTRUCTIONS = ("homelab-ai cluster tools: route state, drain/undrain, policy reload, models, GPU nodes, engine URLs "
                "and allowlisted files of managed hosts. Mutating tools take dry_run; use it first.")


def _security(settings) -> TransportSecuritySettings:
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *settings.allowed_hosts]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *settings.allowed_origins]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


class BridgeApp:
    def __init__(self, config_path: str, admin_key: Optional[str] = None, hooks: Optional[Hooks] = None):
        self.services = Services(config_path, admin_key, hooks)
        cfg = self.services.cfg
        self.verifier = KeyVerifier(cfg)
        self.audit = AuditLog(cfg)
        self.server = MCPServer("homelab-ai", version=__version__, instructions=INSTRUCTIONS,
                                middleware=[GateMiddleware(self.verifier, self.audit)], log_level="WARNING")
        register_tools(self.server, self.services)
        sec = _security(self.services.settings)
        # Streamable HTTP answers each request with one JSON body (json_response), not an SSE stream per call: the
        # tools are request/response (no progress notifications), and behind Caddy a per-call SSE stream was cut
        # now and then before its result ("SSE stream ended without a response": about 1 call sequence in 30 in the
        # lab, none straight to the bridge). A plain JSON body with a length has no such tail to lose.
        self._http = self.server.streamable_http_app(transport_security=sec, json_response=True)
        self._sse = self.server.sse_app(transport_security=sec)

    @contextlib.asynccontextmanager
    async def lifespan(self):
        async with self.server.session_manager.run():
            try:
                yield
            finally:
                await self.services.close()
                self.verifier.close()
                self.audit.close()

    async def _json(self, send, status: int, body: dict) -> None:
        data = orjson.dumps(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                *([(b"www-authenticate", b"Bearer")] if status == 401 else [])]})
        await send({"type": "http.response.body", "body": data})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # its 401/403/404 come before the body is read: read it first (router_app/ops/readfirst.py)
        receive, send = readfirst.wrap(scope, receive, send, BODY_LIMIT)
        path = scope["path"]
        if path == "/healthz":
            await self._json(send, 200, {"status": "ok"})
            return
        if path not in ("/mcp", "/sse") and not path.startswith("/messages/"):
            await self._json(send, 404, {"error": {"message": f"{path} is not served here", "code": "not_found"}})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self.verifier.verify(bearer_of(headers))
        except AuthFailure as exc:
            await self._json(send, exc.status, {"error": {"message": exc.message, "code": exc.code}})
            return
        app = self._http if path == "/mcp" else self._sse
        await app(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        msg = await receive()
        assert msg["type"] == "lifespan.startup"
        cm = self.lifespan()
        try:
            await cm.__aenter__()
        except Exception as exc:     # noqa: BLE001
            await send({"type": "lifespan.startup.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()              # lifespan.shutdown
        await cm.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})


def serve(config_path: str, host: Optional[str] = None, port: Optional[int] = None,
          log_level: str = "warning") -> int:
    import uvicorn
    from ..decision.config import load_config
    cfg = load_config(config_path)
    admin_key = os.environ.get(cfg.admin_key_env) if cfg.admin_key_env else None
    bridge = BridgeApp(config_path, admin_key)
    s = bridge.services.settings
    # timeout_keep_alive as the router's: uvicorn's default 5 s closed connections that Caddy (or a client) still
    # held as idle, and a request sent on one just then failed (tests/router/test_mcp_behind_caddy.py).
    kw = {}
    try:
        from ..ops.httpconn import HttpProtocol     # on a stop, a request already on its way is still answered
        kw["http"] = HttpProtocol
    except ImportError:
        pass
    uvicorn.run(bridge, host=host or s.listen.host, port=port or s.listen.port, log_level=log_level,
                lifespan="on", access_log=False, server_header=False, timeout_graceful_shutdown=5,
                timeout_keep_alive=75, **kw)
    return 0
