"""``homelab-router keys ...`` and ``homelab-router usage``.

Registered into the core CLI by ``register(subparsers)``; also runnable alone
(``python -m router_app.cli.access keys list --config PATH``).

The commands work while the router runs: they write the same SQLite file
(WAL) and the router picks up key changes within about half a second.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional, Sequence

from ..access.config import resolve_store_path, settings_from
from ..access.store import Store, StoreError, utc_day, utc_month


def _load(config_path: str):
    from ..decision.config import ConfigInvalid, load_config
    try:
        cfg = load_config(config_path)
    except ConfigInvalid as e:
        for err in e.errors:
            print(f"{err.path}: {err.message}", file=sys.stderr)
        raise SystemExit(1)
    return cfg


def _open(cfg) -> Store:
    return Store(resolve_store_path(settings_from(cfg), cfg))


def _csv(v: Optional[str]) -> Optional[list[str]]:
    if v is None:
        return None
    items = [x.strip() for x in v.split(",") if x.strip()]
    return items


def _err(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def cmd_create(a: argparse.Namespace) -> int:
    from ..access.controller import resolve_models
    cfg = _load(a.config)
    routes = _csv(a.routes)
    models = _csv(a.models)
    if routes is not None:
        bad = [r for r in routes if r not in cfg.routes]
        if bad or not routes:
            return _err(f"unknown route(s) {', '.join(bad) or '(empty list)'}; "
                        f"routes in the config: {', '.join(cfg.routes)}")
    if models is not None:
        got, unknown = resolve_models(models, cfg)
        if unknown or not models:
            return _err(f"unknown model name(s) {', '.join(unknown) or '(empty list)'}: use an alias, "
                        f"a route name, a route's model id, homelab/<bucket> or homelab/auto")
    store = _open(cfg)
    try:
        rec, secret = store.create_key(a.app, routes=routes, models=models, rpm=a.rpm,
                                       tokens_per_day=a.tokens_per_day,
                                       tokens_per_month=a.tokens_per_month)
    except StoreError as e:
        return _err(str(e))
    finally:
        store.close()
    _print_secret(a, rec, secret, "created")
    return 0


def _print_secret(a: argparse.Namespace, rec, secret: str, verb: str) -> None:
    if getattr(a, "json", False):
        d = rec.public()
        d["secret"] = secret
        print(json.dumps(d))
        return
    print(secret)
    print(f"# key {rec.kid} {verb} for app '{rec.app}'. This secret is shown once and is not stored; "
          f"send it as 'Authorization: Bearer <secret>'.", file=sys.stderr)


def cmd_list(a: argparse.Namespace) -> int:
    cfg = _load(a.config)
    store = _open(cfg)
    try:
        recs = store.list_keys(include_revoked=a.all)
    finally:
        store.close()
    if a.json:
        print(json.dumps([r.public() for r in recs], indent=2))
        return 0
    rows = [("APP", "KEY ID", "ROUTES", "MODELS", "RPM", "TOKENS/DAY", "TOKENS/MONTH", "CREATED", "STATE")]
    for r in recs:
        rows.append((
            r.app, r.kid,
            ",".join(r.routes) if r.routes is not None else ("*" if r.models is None else "-"),
            ",".join(r.models) if r.models is not None else "-",
            str(r.rpm or "-"), str(r.tokens_per_day or "-"), str(r.tokens_per_month or "-"),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at)),
            "active" if r.active else "revoked " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.revoked_at)),
        ))
    _table(rows)
    return 0


def cmd_revoke(a: argparse.Namespace) -> int:
    cfg = _load(a.config)
    store = _open(cfg)
    try:
        ok = store.revoke(a.name)
    finally:
        store.close()
    if not ok:
        return _err(f"no active key for app '{a.name}'", 1)
    print(f"revoked the key of app '{a.name}'")
    return 0


def cmd_rotate(a: argparse.Namespace) -> int:
    cfg = _load(a.config)
    store = _open(cfg)
    try:
        rec, secret = store.rotate(a.name)
    except StoreError as e:
        return _err(str(e), 1)
    finally:
        store.close()
    _print_secret(a, rec, secret, "rotated (the old secret no longer works)")
    return 0


def usage_report(cfg, store: Store, now: Optional[float] = None) -> list[dict[str, Any]]:
    s = settings_from(cfg)
    ts = time.time() if now is None else now
    month, day = utc_month(ts), utc_day(ts)
    per = store.usage_by_app_route(month)
    spent = store.spent(ts)
    keys = {r.app: r for r in store.list_keys()}
    apps: dict[str, dict[str, Any]] = {}
    for row in per:
        d = apps.setdefault(row["app"], {"app": row["app"], "calls": 0, "prompt_tokens": 0,
                                         "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0})
        d["calls"] += row["calls"]
        d["prompt_tokens"] += row["prompt_tokens"]
        d["completion_tokens"] += row["completion_tokens"]
        d["total_tokens"] += row["total_tokens"]
        p = s.prices.get(row["route"] or "")
        if p is not None:
            d["cost_usd"] += (row["prompt_tokens"] * p.input_per_mtok
                              + row["completion_tokens"] * p.output_per_mtok) / 1e6
    for app in keys:
        apps.setdefault(app, {"app": app, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                              "total_tokens": 0, "cost_usd": 0.0})
    out = []
    for app, d in sorted(apps.items()):
        k = keys.get(app)
        used_day, used_month = spent.get(app, (0, 0))
        d["month"] = month
        d["tokens_today"] = used_day
        d["budget_left_day"] = (k.tokens_per_day - used_day) if (k and k.tokens_per_day) else None
        d["budget_left_month"] = (k.tokens_per_month - used_month) if (k and k.tokens_per_month) else None
        d["key"] = "active" if k else "none"
        d["cost_usd"] = round(d["cost_usd"], 6)
        out.append(d)
    return out


def cmd_usage(a: argparse.Namespace) -> int:
    cfg = _load(a.config)
    store = _open(cfg)
    try:
        rep = usage_report(cfg, store)
    finally:
        store.close()
    if a.json:
        print(json.dumps(rep, indent=2))
        return 0
    month = rep[0]["month"] if rep else utc_month(time.time())
    rows = [("APP", "CALLS", "TOKENS (" + month + ")", "TODAY", "LEFT TODAY", "LEFT MONTH", "COST-EQUIV USD")]
    tot_calls = tot_tok = 0
    tot_cost = 0.0
    for d in rep:
        rows.append((d["app"], str(d["calls"]), str(d["total_tokens"]), str(d["tokens_today"]),
                     "-" if d["budget_left_day"] is None else str(d["budget_left_day"]),
                     "-" if d["budget_left_month"] is None else str(d["budget_left_month"]),
                     f"{d['cost_usd']:.4f}"))
        tot_calls += d["calls"]
        tot_tok += d["total_tokens"]
        tot_cost += d["cost_usd"]
    rows.append(("TOTAL", str(tot_calls), str(tot_tok), "", "", "", f"{tot_cost:.4f}"))
    _table(rows)
    if tot_cost:
        print(f"\nYou saved ${tot_cost:.2f} this month against the configured cloud prices.")
    return 0


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def register(subparsers: "argparse._SubParsersAction") -> None:
    keys = subparsers.add_parser("keys", help="manage per-app API keys")
    ksub = keys.add_subparsers(dest="keys_cmd", metavar="{create,ensure,list,revoke,rotate,scopes}")
    ksub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="router config file (its store_path is used)")

    p = ksub.add_parser("create", help="create a key for an app; prints the secret once")
    common(p)
    p.add_argument("--app", required=True, help="app name (one active key per app)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--routes", help="comma-separated routes the key may use (default: all)")
    g.add_argument("--models", help="comma-separated model names (aliases, homelab/<bucket>, ...)")
    p.add_argument("--rpm", type=_pos_int, help="requests per minute")
    p.add_argument("--tokens-per-day", type=_pos_int, help="token budget per UTC day")
    p.add_argument("--tokens-per-month", type=_pos_int, help="token budget per UTC month")
    p.add_argument("--json", action="store_true", help="print the key (with the secret) as JSON")
    p.set_defaults(func=cmd_create)

    p = ksub.add_parser("list", help="list keys (never secrets)")
    common(p)
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = ksub.add_parser("revoke", help="revoke an app's key")
    common(p)
    p.add_argument("name", help="app name")
    p.set_defaults(func=cmd_revoke)

    p = ksub.add_parser("rotate", help="replace an app's secret (same limits); prints it once")
    common(p)
    p.add_argument("name", help="app name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rotate)

    from .scopes import register as register_scopes
    register_scopes(ksub, common)
    from .ensure import register as register_ensure     # keys ensure: the key kept in a 0600 env file
    register_ensure(ksub, common)

    p = subparsers.add_parser("usage", help="per-app calls, tokens, budget left, cost-equivalent")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_usage)


def _pos_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {v!r}")
    if n <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return n


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="homelab-router")
    sub = ap.add_subparsers(dest="cmd")
    sub.required = True
    register(sub)
    a = ap.parse_args(argv)
    return int(a.func(a) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
