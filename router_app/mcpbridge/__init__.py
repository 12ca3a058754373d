"""homelab-router's MCP bridge: the cluster as tools for MCP clients (Claude Desktop, Cursor, Goose, agents).

Named `mcpbridge` so it never shadows the official `mcp` SDK it is built on.

Design: a sibling process from the same package (`homelab-router mcp --config <router config>`, port 8092), not a
part of the router process. The router's /v1 hot path stays free of the SDK and its sessions; the bridge reaches the
router through its admin API on loopback with the admin key, so drain, reload and route state have exactly one
implementation (router_app/ops/app.py). It shares the router's key store (per-app keys, plus the `read`/`admin`
scopes of router_app/access/scopes.py) and writes its own audit file next to the router's.

Modules: settings (the `mcp:` config section), services (the one service interface, with the hooks for issues
13/14), auth (keys, scopes, audit), tools (schemas and annotations), app (ASGI + serve).
"""
