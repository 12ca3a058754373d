"""The bridge's MCP tools: typed schemas, annotations, and one-line calls into services.Services.

Auth, scopes and the audit line live in one place, `GateMiddleware` (an SDK `ServerMiddleware` wrapping every
`tools/call`), so a call refused for its scope or for bad arguments is audited like one that ran.
"""
from __future__ import annotations

import time
from typing import Annotated, Any, Optional

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from .auth import AuditLog, AuthFailure, KeyVerifier, bearer_of
from .services import ServiceError, Services

# scope per tool: "read" for the read-only ones, "admin" for the rest (and for key usage, which names every app)
TOOL_SCOPES: dict[str, str] = {}

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="a name from the config")]
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$",
                                description="a node name from cluster_nodes")]
InfraPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^/",
                                 description="absolute path inside the node's allowlist (no '..', no globs)")]
DryRun = Annotated[bool, Field(description="true: only say what would be done; nothing changes")]

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _mutating(destructive: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent,
                           open_world_hint=False)


class GateMiddleware:
    """Authenticate, check the tool's scope, run, audit. Never lets an exception end the session."""

    def __init__(self, verifier: KeyVerifier, audit: AuditLog):
        self.verifier, self.audit = verifier, audit

    async def __call__(self, ctx, call_next):
        if ctx.method != "tools/call":
            return await call_next(ctx)
        t0 = time.perf_counter()
        params = ctx.params or {}
        tool = str(params.get("name"))
        args = params.get("arguments")
        req = ctx.request
        transport = "sse" if req is not None and req.url.path.startswith("/messages") else "streamable-http"
        principal = None
        try:
            principal = self.verifier.verify(bearer_of(getattr(req, "headers", None)))
            need = TOOL_SCOPES.get(tool)
            if need is not None and not principal.may(need):
                raise AuthFailure(403, "scope_missing", f"{tool} needs the {need!r} scope; app {principal.app!r} "
                                                        f"has {', '.join(principal.scopes)}")
        except AuthFailure as exc:
            self.audit.record(tool=tool, principal=principal, transport=transport, args=args, outcome="refused",
                              t0=t0, error=exc.code)
            return CallToolResult(content=[TextContent(type="text", text=f"refused: {exc.message}")], is_error=True)
        try:
            result = await call_next(ctx)
        except Exception as exc:     # a protocol error (unknown tool, malformed params) is still audited
            self.audit.record(tool=tool, principal=principal, transport=transport, args=args, outcome="error",
                              t0=t0, error=f"{type(exc).__name__}: {exc}")
            raise
        err = getattr(result, "is_error", False)
        text = None
        if err and getattr(result, "content", None):
            text = getattr(result.content[0], "text", None)
        self.audit.record(tool=tool, principal=principal, transport=transport, args=args,
                          outcome="error" if err else "ok", t0=t0, error=text)
        return result


async def _do(coro) -> dict[str, Any]:
    try:
        return await coro
    except ServiceError as exc:
        raise ToolError(str(exc)) from None


def register_tools(server: MCPServer, svc: Services) -> None:
    def tool(name: str, scope: str, annotations: ToolAnnotations, description: str):
        TOOL_SCOPES[name] = scope
        return server.tool(name=name, annotations=annotations, description=description, structured_output=False)

    @tool("route_status", "read", READ, "Per-route health, drain state, in-flight and queued requests and caps of "
          "the router (GET /admin/upstreams). Give route to see one route.")
    async def route_status(route: Optional[Name] = None) -> dict:
        return await _do(svc.route_status(route))

    @tool("drain_route", "admin", _mutating(False, True), "Drain a route (auto-routed traffic takes its failover "
          "chain; route pins still reach it), or undrain it with drain=false. dry_run=true reports the current "
          "state and what would change.")
    async def drain_route(route: Name, drain: bool = True, dry_run: DryRun = False) -> dict:
        return await _do(svc.drain_route(route, drain, dry_run))

    @tool("reload_policy", "admin", _mutating(False, True), "Re-read the router's config file and swap it in "
          "atomically; an invalid file is refused with every error listed and the old policy keeps serving. "
          "dry_run=true validates the file and lists the route changes without swapping.")
    async def reload_policy(dry_run: DryRun = False) -> dict:
        return await _do(svc.reload_policy(dry_run))

    @tool("key_usage", "admin", READ, "Per-app keys (never secrets) with today's and this month's tokens and the "
          "budget left (GET /admin/keys).")
    async def key_usage() -> dict:
        return await _do(svc.keys())

    @tool("model_list", "read", READ, "The models this key may use: catalogued models with their state per route "
          "(hot, loading, sleeping, on_disk; GET /admin/catalog), and each route's fixed model or alias (ready, down, "
          "drained).")
    async def model_list(ctx: Context) -> dict:
        return await _do(svc.model_list(bearer_of(ctx.headers) or ""))

    @tool("model_load", "admin", _mutating(False, True), "Load a catalogued model (POST /admin/models/load): the "
          "placement picks the route unless route (or a node with one route for it) is given. dry_run=true says "
          "where it would go and what it would evict (GET /admin/placement/{model}).")
    async def model_load(model: Annotated[str, Field(min_length=1, max_length=256)], node: Optional[NodeName] = None,
                         route: Optional[Name] = None, dry_run: DryRun = False) -> dict:
        return await _do(svc.model_load(model, node, dry_run, route=route))

    @tool("model_unload", "admin", _mutating(True, True), "Unload a model (POST /admin/models/unload; refused while "
          "it has requests in flight), from every route or the given route/node, freeing its VRAM. dry_run=true "
          "says which routes hold it now.")
    async def model_unload(model: Annotated[str, Field(min_length=1, max_length=256)],
                           node: Optional[NodeName] = None, route: Optional[Name] = None,
                           dry_run: DryRun = False) -> dict:
        return await _do(svc.model_load(model, node, dry_run, unload=True, route=route))

    @tool("cluster_nodes", "read", READ, "The GPU nodes from the hub (GET /admin/nodes): heartbeat health, cards "
          "with VRAM used/free, engines with the router's route state (model, health, drain, load) and the "
          "catalog's engine state. Without the hub: the router config's view of the engines.")
    async def cluster_nodes() -> dict:
        return await _do(svc.cluster_nodes())

    @tool("node_engine_url", "read", READ, "Base URLs (…/v1, OpenAI-compatible) of a node's engines, or of one "
          "route's engine on it.")
    async def node_engine_url(node: NodeName, route: Optional[Name] = None) -> dict:
        return await _do(svc.node_engine_url(node, route))

    @tool("node_ollama_url", "read", READ, "Base URL of the Ollama native API on a node (an error when the node "
          "runs no Ollama; see node_engine_url).")
    async def node_ollama_url(node: NodeName) -> dict:
        return await _do(svc.node_ollama_url(node))

    @tool("infra_list", "read", READ, "Files of a managed node that infra_read may fetch. Without path: the node's "
          "allowlist (its inventory's homelab_agent_infra_paths, as its agent reported it). With path (an allowlist "
          "entry or a path under one): that file, or that directory's entries, with type, size, mtime and mode, "
          "fetched by the node's agent (the hub's list_files command; waits up to 15 s). Paths outside the "
          "allowlist, relative paths, '..' and symlinks leading out are refused.")
    async def infra_list(node: NodeName, path: Optional[InfraPath] = None) -> dict:
        return await _do(svc.infra_list(node, path))

    @tool("infra_read", "read", READ, "Read one allowlisted file of a managed node through its node agent (the hub's "
          "read_file command; waits up to 15 s): content (encoding utf-8, or base64 for binary), size, mtime, "
          "truncated. Paths outside the allowlist, relative paths, '..', symlinks leading out, non-regular files "
          "and secret-looking files (root-owned 0600, *.env, keys) are refused.")
    async def infra_read(node: NodeName, path: InfraPath,
                         max_bytes: Annotated[int, Field(ge=1, le=262144, description="bytes to return at most "
                                                         "(<= 256 KiB; truncated says when the file is longer)")]
                         = 65536) -> dict:
        return await _do(svc.infra_read(node, path, max_bytes))

    @tool("recover_cuda", "admin", _mutating(True, False), "Recover a node whose CUDA context is wedged: queues the "
          "hub's recover_cuda command for the node's agent (POST /admin/recover-cuda: stop its engines, reload "
          "nvidia_uvm, start them) and returns the command id. dry_run=true names the node, its routes and the "
          "command.")
    async def recover_cuda(node: NodeName, dry_run: DryRun = False) -> dict:
        return await _do(svc.recover_cuda(node, dry_run))
