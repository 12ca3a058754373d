"""A read-only view of the Proxmox VE cluster through proxmoxer (seed 000's proxy): guests and their state.

Only GET calls are made (`/cluster/resources?type=vm`); the API token should be a PVEAuditor-only token. proxmoxer
is imported lazily: it is needed only when `hub.proxmox` is configured.
"""
from __future__ import annotations

import os

from ..errors import ApiError

FIELDS = ("vmid", "name", "node", "type", "status", "maxmem", "mem", "maxcpu", "cpu", "uptime", "maxdisk", "tags")


def guests(settings) -> dict:
    if settings is None:
        raise ApiError(404, "no Proxmox view configured (hub.proxmox)", code="proxmox_not_configured")
    secret = os.environ.get(settings.token_value_env)
    if not secret:
        raise ApiError(503, f"env var {settings.token_value_env} (Proxmox API token) is not set", type="server_error",
                       code="proxmox_token_missing")
    try:
        from proxmoxer import ProxmoxAPI
    except ImportError:  # pragma: no cover
        raise ApiError(503, "proxmoxer is not installed (pip install proxmoxer)", type="server_error",
                       code="proxmox_client_missing") from None
    try:
        api = ProxmoxAPI(settings.host, port=settings.port, user=settings.user, token_name=settings.token_name,
                         token_value=secret, verify_ssl=settings.ca_file or settings.verify_ssl,
                         timeout=settings.timeout_s)
        rows = api.cluster.resources.get(type="vm")
    except Exception as exc:
        raise ApiError(502, f"Proxmox API at {settings.host}:{settings.port}: {type(exc).__name__}: {exc}",
                       type="server_error", code="proxmox_unreachable") from None
    out = [{k: g.get(k) for k in FIELDS if k in g} for g in rows or []]
    out.sort(key=lambda g: (g.get("node") or "", g.get("vmid") or 0))
    return {"host": settings.host, "guests": out}
