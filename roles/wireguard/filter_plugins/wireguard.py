"""Address helpers for the wireguard role (standard library only, no netaddr)."""

from __future__ import annotations

import base64
import binascii
import ipaddress


def wireguard_network(value):
    """'10.99.0.1/24' -> '10.99.0.0/24' (the tunnel subnet of an interface address)."""
    return str(ipaddress.ip_interface(str(value).strip()).network)


def wireguard_is_interface(value):
    """True when value is an address with a prefix length, e.g. '10.99.0.1/24'."""
    text = str(value).strip()
    if "/" not in text:
        return False
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True


def wireguard_is_network(value):
    """True when value is an address or a CIDR usable in AllowedIPs (host bits allowed)."""
    try:
        ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        return False
    return True


def wireguard_is_key(value):
    """True when value looks like a WireGuard key: base64 of exactly 32 bytes."""
    text = str(value).strip()
    if len(text) != 44 or not text.endswith("="):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def wireguard_as_list(value):
    """Accept a list or a comma separated string of AllowedIPs; return a clean list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]


class FilterModule:
    def filters(self):
        return {
            "wireguard_network": wireguard_network,
            "wireguard_is_interface": wireguard_is_interface,
            "wireguard_is_network": wireguard_is_network,
            "wireguard_is_key": wireguard_is_key,
            "wireguard_as_list": wireguard_as_list,
        }
