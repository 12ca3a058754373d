"""`homelab-router explain --router URL --model NAME`: the live placement for a model, from a running router's
GET /admin/placement/{model} (candidates, scores, why each node was rejected). The admin key, when the router has
one, is read from the environment variable named by --admin-key-env (never from the command line)."""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from .placement import Placement, format_placement


def explain_placement(router_url: str, model: str, key_env: str = "HOMELAB_ROUTER_ADMIN_KEY",
                      as_json: bool = False) -> int:
    req = urllib.request.Request(router_url.rstrip("/") + "/admin/placement/" + urllib.parse.quote(model, safe=""))
    key = os.environ.get(key_env)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            d = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        print(f"refused: HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"cannot reach the router at {router_url}: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(d, indent=2, sort_keys=True))
    else:
        p = Placement(d["model"], d.get("choice"), d.get("state"), d.get("evict") or [], d.get("candidates") or [],
                      d.get("rejected") or [])
        print(format_placement(p))
    return 0
