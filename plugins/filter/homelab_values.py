"""homelab-ai: value helpers shared by the role rules (homelab_rules.py, homelab_engine_rules.py)."""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

# Route names become systemd unit names (vllm-<route>), file names (<route>.keys) and environment
# variable names (HOMELAB_ROUTE_<ROUTE>_API_KEY, where '-' becomes '_'): lower-case letters, digits, '-'.
ROUTE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ROUTE_NAME_HELP = "lower-case letters, digits and '-', starting with a letter or digit"
Problem = tuple[str, str]


# ------------------------------------------------------------------------------------------------
# value helpers

def _int(v: Any) -> int | None:
    """An integer (or an integer-looking string, as Ansible templating yields), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*\d+\s*", v):
        return int(v)
    return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v) if isinstance(v, (int, float, str)) else None
    except ValueError:
        return None


def _port(v: Any) -> bool:
    p = _int(v)
    return p is not None and 1 <= p <= 65535


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _list(v: Any) -> bool:
    return isinstance(v, (list, tuple))


def is_network(v: Any) -> bool:
    """An IPv4/IPv6 address or CIDR (host bits allowed)."""
    try:
        ipaddress.ip_network(str(v).strip(), strict=False)
    except ValueError:
        return False
    return _text(v)


def is_wireguard_key(v: Any) -> bool:
    text = str(v).strip()
    if len(text) != 44 or not text.endswith("="):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "yes", "on", "1")
    return bool(v)


def _required(v: Mapping[str, Any], key: str, why: str) -> list[Problem]:
    return [] if _text(v.get(key)) else [(key, f"is required: {why}")]



class FilterModule:
    """No filters: helpers for homelab_rules.py."""

    def filters(self) -> dict[str, Any]:
        return {}
