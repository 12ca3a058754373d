"""Filters that compile the homelab-router config from the Ansible inventory.

The compilation itself is ``router_app.decision.inventory.compile_router_config`` (one schema, owned by the router);
this plugin only gathers the inventory data and hands it over.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from ansible.errors import AnsibleFilterError

_REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _inventory_module():
    try:
        from router_app.decision import inventory  # noqa: PLC0415
    except ImportError:
        # Not installed in the control node's Python: use the checkout this role lives in.
        if _REPO_ROOT not in sys.path:
            sys.path.insert(0, _REPO_ROOT)
        try:
            from router_app.decision import inventory  # noqa: PLC0415
        except ImportError as exc:
            raise AnsibleFilterError(
                f"router_app.decision.inventory cannot be imported (looked in the control node's Python and {_REPO_ROOT}): {exc}"
            ) from exc
    return inventory


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def router_config_from_inventory(hostvars: Any, gpu_hosts: Any, **kwargs: Any) -> dict:
    """``{{ hostvars | router_config_from_inventory(groups['gpu_nodes'], router_port=4000, ...) }}``.

    Keyword arguments are those of ``compile_router_config`` (router_port, buckets, tie_break, size_promotions,
    embeddings_route, listen_host, admin_key_env, log_dir, extra).
    """
    inventory = _inventory_module()
    hosts: dict[str, dict] = {}
    for name in list(gpu_hosts or []):
        hv = hostvars[name]
        hosts[str(name)] = {
            "homelab_address": _plain(hv.get("homelab_address")),
            "engines": _plain(hv.get("engines") or []),
        }
    args = {k: _plain(v) for k, v in kwargs.items()}
    if not args.get("embeddings_route"):
        args.pop("embeddings_route", None)
    return inventory.compile_router_config(hosts, **args)


def router_api_key_env(route: str) -> str:
    """Name of the env var holding a route's upstream key (``eyes`` -> ``HOMELAB_ROUTE_EYES_API_KEY``)."""
    return _inventory_module().api_key_env_for(route)


def router_mcp_nodes(hostvars: Any, gpu_hosts: Any) -> dict:
    """``{{ hostvars | router_mcp_nodes(groups['gpu_nodes']) }}``: the node map of the MCP bridge's config
    (``mcp.nodes``): each GPU host's address and its engines' route, runtime and port."""
    out: dict[str, dict] = {}
    for name in list(gpu_hosts or []):
        hv = hostvars[name]
        engines = []
        for e in _plain(hv.get("engines") or []):
            if isinstance(e, dict):
                engines.append({k: e[k] for k in ("route", "runtime", "port") if e.get(k) is not None})
        out[str(name)] = {"address": _plain(hv.get("homelab_address")), "engines": engines}
    return out


class FilterModule:
    def filters(self) -> dict:
        return {
            "router_config_from_inventory": router_config_from_inventory,
            "router_api_key_env": router_api_key_env,
            "router_mcp_nodes": router_mcp_nodes,
        }
