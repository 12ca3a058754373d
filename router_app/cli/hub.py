"""`homelab-router nodes | commands | recover-cuda | events`: the hub's admin API from the command line.

They talk to a running router over HTTP (--url, default $HOMELAB_ROUTER_URL or http://127.0.0.1:4000) with the
admin key read from the environment variable named by --admin-key-env (never from the command line).
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def _call(args, method: str, path: str, body=None, query=None):
    url = args.url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(args.admin_key_env or "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": {"message": str(exc)}}
    except (OSError, urllib.error.URLError) as exc:
        return 0, {"error": {"message": f"cannot reach {args.url}: {exc}"}}


def _out(args, status: int, data) -> int:
    if status == 0 or status >= 400:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        print(f"error{f' HTTP {status}' if status else ''}: {err.get('message', data)}", file=sys.stderr)
        return 1
    if args.json or not isinstance(data, dict):
        print(json.dumps(data, indent=2))
        return 0
    if "nodes" in data:
        for n in data["nodes"]:
            age = f"{n['age_s']}s ago" if n.get("age_s") is not None else "never"
            cards = ", ".join(f"{g.get('name')} {g.get('memory_used_mib')}/{g.get('memory_total_mib')} MiB"
                              for g in n.get("gpus") or [])
            print(f"{n['node']:<16} {n['state']:<8} heartbeat {age:<12} routes {','.join(n['routes']) or '-':<14} "
                  f"{cards}")
    elif "commands" in data:
        for c in data["commands"]:
            print(_cmd_line(c))
    elif "events" in data:
        for e in data["events"]:
            rest = {k: v for k, v in e.items() if k not in ("id", "ts", "kind", "node", "route")}
            where = e.get("node") or e.get("route") or "-"
            print(f"{e['id']:>6} {time.strftime('%H:%M:%S', time.gmtime(e['ts']))} {e['kind']:<20} {where:<14} "
                  f"{json.dumps(rest)}")
    else:
        print(_cmd_line(data) if "kind" in data else json.dumps(data, indent=2))
    return 0


def _cmd_line(c: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["created_at"]))
    res = c.get("result") or {}
    return (f"{c['id']}  {c['kind']:<15} {c.get('node') or '(router)':<14} {c['status']:<10} {when}Z  "
            f"by {c['requested_by']}  {res.get('summary') or res.get('detail') or c.get('detail') or ''}")


def cmd_nodes(args) -> int:
    return _out(args, *_call(args, "GET", "/admin/nodes"))


def cmd_commands(args) -> int:
    if args.id:
        return _out(args, *_call(args, "GET", f"/admin/commands/{urllib.parse.quote(args.id)}"))
    if args.kind:
        extra = {}
        for item in args.arg or ():
            k, sep, v = item.partition("=")
            if not sep:
                print(f"--arg wants K=V (or K:=JSON), got {item!r}", file=sys.stderr)
                return 2
            if k.endswith(":"):         # K:=JSON, e.g. --arg max_bytes:=4096
                try:
                    extra[k[:-1]] = json.loads(v)
                except ValueError:
                    print(f"--arg {k}=: not JSON: {v!r}", file=sys.stderr)
                    return 2
                continue
            extra[k] = {"true": True, "false": False}.get(v, v)
        body = {"kind": args.kind, "args": extra, "node": args.node, "route": args.route, "ttl_s": args.ttl}
        return _out(args, *_call(args, "POST", "/admin/commands", {k: v for k, v in body.items() if v is not None}))
    return _out(args, *_call(args, "GET", "/admin/commands",
                             query={"node": args.node, "status": args.status, "limit": args.limit}))


def cmd_recover(args) -> int:
    if bool(args.node) == bool(args.route):
        print("give exactly one of --node or --route", file=sys.stderr)
        return 2
    body = {"node": args.node, "route": args.route, "ttl_s": args.ttl}
    return _out(args, *_call(args, "POST", "/admin/recover-cuda", {k: v for k, v in body.items() if v is not None}))


def cmd_events(args) -> int:
    return _out(args, *_call(args, "GET", "/admin/events", query={"kind": args.kind, "node": args.node,
                                                                   "route": args.route, "since": args.since,
                                                                   "limit": args.limit}))


def register(sub) -> None:
    def common(p):
        p.add_argument("--url", default=os.environ.get("HOMELAB_ROUTER_URL", "http://127.0.0.1:4000"))
        p.add_argument("--admin-key-env", default="HOMELAB_ROUTER_ADMIN_KEY",
                       help="env var holding the admin key (default HOMELAB_ROUTER_ADMIN_KEY)")
        p.add_argument("--timeout", type=float, default=30)
        p.add_argument("--json", action="store_true")

    n = sub.add_parser("nodes", help="the hub's node registry (state, last heartbeat, cards, routes)")
    common(n)
    n.set_defaults(func=cmd_nodes)

    c = sub.add_parser("commands", help="list commands, show one (--id), or queue one (--kind)")
    common(c)
    c.add_argument("--id")
    c.add_argument("--kind", help="queue a command from the closed list (see GET /admin/command-kinds)")
    c.add_argument("--arg", action="append", metavar="K=V",
                   help="an argument (repeat); K:=JSON for a typed value, e.g. --arg path=/etc/homelab/agent.json "
                        "--arg max_bytes:=4096 with --kind read_file")
    c.add_argument("--node")
    c.add_argument("--route")
    c.add_argument("--ttl", type=float)
    c.add_argument("--status")
    c.add_argument("--limit", type=int)
    c.set_defaults(func=cmd_commands)

    r = sub.add_parser("recover-cuda", help="recover CUDA on a node, or on the node serving a route")
    common(r)
    r.add_argument("--node")
    r.add_argument("--route")
    r.add_argument("--ttl", type=float)
    r.set_defaults(func=cmd_recover)

    e = sub.add_parser("events", help="hub events: route up/down, drains, nodes, commands, recoveries")
    common(e)
    for opt in ("--kind", "--node", "--route"):
        e.add_argument(opt)
    e.add_argument("--since", type=int)
    e.add_argument("--limit", type=int)
    e.set_defaults(func=cmd_events)
