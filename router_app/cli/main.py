"""Command line: serve, check-config, explain, the access-control subcommands and the hub's (nodes, commands,
recover-cuda, events)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from ..errors import ApiError
from ..decision.config import ConfigInvalid, load_config
from . import access as cli_access
from . import hub as cli_hub


def _print_errors(errors, stream=sys.stderr) -> None:
    for e in errors:
        print(f"{e.path}: {e.message}", file=stream)


def cmd_serve(args) -> int:
    import uvicorn
    from ..v1.app import create_app
    try:
        app = create_app(config_path=args.config)
    except ConfigInvalid as exc:
        print(f"config {args.config} is invalid:", file=sys.stderr)
        _print_errors(exc.errors)
        return 1
    cfg = app.runtime.config
    host = args.host or cfg.listen.host
    port = args.port or cfg.listen.port
    # SIGTERM: uvicorn closes its listening socket at once (so a proxy in front sees connection refused and retries
    # the dial: roles/caddy's lb_try_duration), finishes the requests in flight for up to --graceful-timeout
    # seconds, then runs the lifespan shutdown (ledger, hub store). The unit's TimeoutStopSec is longer. A connection
    # with no request in progress gets a moment for one already on its way (router_app/ops/httpconn.py).
    kw = dict(host=host, port=port, access_log=False, log_level=args.log_level, lifespan="on",
              timeout_keep_alive=75, server_header=False, timeout_graceful_shutdown=args.graceful_timeout)
    try:
        import uvloop  # noqa: F401
        kw["loop"] = "uvloop"
    except ImportError:
        pass
    try:
        from ..ops.httpconn import HttpProtocol     # httptools; on a stop, a request already on its way is answered
        kw["http"] = HttpProtocol
    except ImportError:
        pass
    if args.fd is not None:     # a listening socket handed over (systemd socket activation: --fd 3)
        kw.pop("host")
        kw.pop("port")
        kw["fd"] = args.fd
    uvicorn.run(app, **kw)
    return 0


def cmd_mcp(args) -> int:
    from ..mcpbridge.app import serve
    from ..mcpbridge.settings import BridgeConfigInvalid
    try:
        return serve(args.config, args.host, args.port, args.log_level)
    except ConfigInvalid as exc:
        print(f"config {args.config} is invalid:", file=sys.stderr)
        _print_errors(exc.errors)
    except BridgeConfigInvalid as exc:
        print(f"config {args.config}: invalid mcp section:", file=sys.stderr)
        _print_errors(exc.errors)
    return 1


def cmd_check(args) -> int:
    try:
        cfg = load_config(args.path)
    except ConfigInvalid as exc:
        _print_errors(exc.errors, sys.stdout)
        return 1
    if cfg.extra("mcp") is not None:     # the MCP bridge's section (router_app/mcpbridge/settings.py)
        from ..mcpbridge.settings import BridgeConfigInvalid, bridge_settings
        try:
            bridge_settings(cfg)
        except BridgeConfigInvalid as exc:
            _print_errors(exc.errors, sys.stdout)
            return 1
    print(f"ok: {args.path}: {len(cfg.routes)} routes, {len(cfg.buckets)} buckets, "
          f"terminal: {', '.join(n for n, r in cfg.routes.items() if r.terminal)}")
    return 0


def _parse_headers(items) -> dict:
    out = {}
    for it in items or ():
        if "=" not in it and ":" not in it:
            raise SystemExit(f"--header wants K=V, got {it!r}")
        k, v = it.split("=", 1) if "=" in it else it.split(":", 1)
        out[k.strip().lower()] = v.strip()
    return out


def cmd_explain(args) -> int:
    from ..decision.policy import Policy, decide, format_explain, view_from_chat, view_from_completion
    if args.router:       # issue 14: the live placement of a catalogued model (router_app/catalog/cli.py)
        from ..catalog.cli import explain_placement
        if not args.model:
            print("--router needs --model", file=sys.stderr)
            return 2
        return explain_placement(args.router, args.model, args.admin_key_env, args.json)
    try:
        cfg = load_config(args.config)
    except ConfigInvalid as exc:
        _print_errors(exc.errors)
        return 1
    headers = _parse_headers(args.header)
    if args.request:
        with open(args.request, "rb") as fh:
            body = json.load(fh)
        if not isinstance(body, dict):
            print("--request must hold a JSON object", file=sys.stderr)
            return 2
    else:
        if not args.text:
            print("give TEXT or --request FILE.json", file=sys.stderr)
            return 2
        text = " ".join(args.text)
        if args.endpoint == "completions":
            body = {"prompt": text}
        else:
            content = text
            if args.image:
                content = [{"type": "text", "text": text},
                           {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
            body = {"messages": [{"role": "user", "content": content}]}
    if args.model:
        body["model"] = args.model
    if args.metadata_bucket:
        body.setdefault("metadata", {})["homelab_bucket"] = args.metadata_bucket
    endpoint = args.endpoint or ("completions" if "prompt" in body and "messages" not in body else "chat")
    mk = view_from_completion if endpoint == "completions" else view_from_chat
    view = mk(body, headers.get("x-homelab-route"), headers.get("x-homelab-bucket"))
    policy = Policy(cfg)
    try:
        d = decide(policy, view, frozenset(args.drained or ()), frozenset(args.allow) if args.allow else None)
    except ApiError as err:
        if args.json:
            print(json.dumps({"status": err.status, **err.body()}, indent=2))
        else:
            print(f"refused: HTTP {err.status} {err.code}: {err.message}")
        return 3
    if args.json:
        print(json.dumps(d.to_dict(), indent=2, sort_keys=True))
    else:
        print(format_explain(d))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="homelab-router", description="Deterministic OpenAI-compatible router.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the router")
    s.add_argument("--config", required=True)
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--log-level", default="warning")
    s.add_argument("--fd", type=int, help="serve on this inherited listening socket (systemd socket activation: 3); "
                                          "connections wait in its backlog while the router restarts")
    s.add_argument("--graceful-timeout", type=float, default=25.0,
                   help="seconds requests in flight may take to finish after SIGTERM (default 25)")
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("mcp", help="run the MCP bridge (Streamable HTTP /mcp, SSE /sse; default 127.0.0.1:8092)")
    m.add_argument("--config", required=True, help="the router's config file (its mcp: section, keys, admin key)")
    m.add_argument("--host")
    m.add_argument("--port", type=int)
    m.add_argument("--log-level", default="warning")
    m.set_defaults(func=cmd_mcp)

    c = sub.add_parser("check-config", help="validate a config file (exit 0, or 1 with each error)")
    c.add_argument("path")
    c.set_defaults(func=cmd_check)

    e = sub.add_parser("explain", help="show the routing decision for a request without contacting any upstream")
    e.add_argument("--config", required=True)
    e.add_argument("--router", metavar="URL", help="ask a running router where --model would be placed, and why")
    e.add_argument("--admin-key-env", default="HOMELAB_ROUTER_ADMIN_KEY", help="env var holding the admin key")
    e.add_argument("--model")
    e.add_argument("--header", action="append", metavar="K=V", help="e.g. X-Homelab-Route=brain")
    e.add_argument("--metadata-bucket")
    e.add_argument("--request", metavar="FILE.json", help="a full request body")
    e.add_argument("--endpoint", choices=("chat", "completions"))
    e.add_argument("--image", action="store_true", help="add an image part to TEXT")
    e.add_argument("--drained", action="append", metavar="ROUTE", help="explain as if ROUTE were drained")
    e.add_argument("--allow", action="append", metavar="ROUTE",
                   help="explain for a key whose whitelist is these routes (a key without one never reaches a "
                        "cloud route)")
    e.add_argument("--json", action="store_true")
    e.add_argument("text", nargs="*")
    e.set_defaults(func=cmd_explain)

    cli_access.register(sub)
    cli_hub.register(sub)      # nodes, commands, recover-cuda, events (router_app/hub)
    return p


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
