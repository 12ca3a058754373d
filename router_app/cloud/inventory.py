"""Cloud routes from the inventory (issue 18): the site variables `router_cloud_routes` and `router_cloud`.

    router_cloud_routes:              # route name -> the router's route keys, without `kind` (always cloud)
      claude:
        provider: anthropic
        url: https://api.anthropic.com/v1
        model: claude-sonnet-4-20250514
        aliases: [cloud/claude]
    router_cloud:                     # the router's top-level `cloud:` key (compare_to, budgets)
      compare_to: claude

The key of each cloud route comes from Vault (`vault_cloud_api_keys.<route>`) into the router's 0600 environment
file under `api_key_env` (default HOMELAB_ROUTE_<ROUTE>_API_KEY). A cloud route is terminal unless it names a
failover (a local route). Router errors about a cloud route are reported on `router_cloud_routes.<route>...`.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional


def cloud_routes_config(cloud_routes: Optional[Mapping[str, Any]], key_env) -> dict[str, dict[str, Any]]:
    """Route entries for the router config (`key_env(route)` names the default key variable)."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in (cloud_routes or {}).items():
        r = dict(spec) if isinstance(spec, Mapping) else {}
        r["kind"] = "cloud"          # whatever the inventory says: these routes leave the house
        r.setdefault("api_key_env", key_env(str(name)))
        if not r.get("failover"):
            r.setdefault("terminal", True)
        out[str(name)] = r
    return out


def cloud_key_errors(cloud_routes: Optional[Mapping[str, Any]], keys: Any) -> list[tuple[str, str]]:
    """(field, reason) for `vault_cloud_api_keys` entries that name no cloud route."""
    if not isinstance(keys, Mapping):
        return []
    names = set(cloud_routes or {})
    return [(f"vault_cloud_api_keys.{k}", f"names route {k!r}, which is not in router_cloud_routes")
            for k in keys if k not in names]
