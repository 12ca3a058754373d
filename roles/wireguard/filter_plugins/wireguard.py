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


def wireguard_host_route(value):
    """'10.99.0.2/24' -> '10.99.0.2/32' (the single tunnel address a mesh peer routes to a host)."""
    iface = ipaddress.ip_interface(str(value).strip())
    return "%s/%d" % (iface.ip, iface.max_prefixlen)


def wireguard_mesh_peers(hosts, me):
    """The [Peer] entries ``me`` needs to reach every other mesh host directly.

    ``hosts``: one dict per host of the mesh group, {name, address (tunnel address with prefix), endpoint,
    public_key, routed_networks, road_warriors (the AllowedIPs of the road-warrior peers attached to that
    host), persistent_keepalive}. Each other host becomes a peer whose AllowedIPs are its own tunnel /32, the
    road-warrior addresses it serves and the networks routed behind it, so traffic for a road warrior of
    another host goes to that host. Hosts without a public key yet (never converged) are returned in
    ``missing`` instead. Raises ValueError for two hosts claiming the same AllowedIPs.
    """
    peers, missing, owner = [], [], {}
    for h in sorted(hosts or [], key=lambda x: str(x.get("name", ""))):
        name = str(h.get("name", ""))
        if name == me:
            continue
        if not h.get("public_key"):
            missing.append(name)
            continue
        allowed = [wireguard_host_route(h["address"])]
        allowed += wireguard_as_list(h.get("road_warriors")) + wireguard_as_list(h.get("routed_networks"))
        for net in allowed:
            key = str(ipaddress.ip_network(net, strict=False))
            if key in owner and owner[key] != name:
                raise ValueError("wireguard mesh: %s is claimed by both %s and %s" % (key, owner[key], name))
            owner[key] = name
        peer = {"name": name, "public_key": str(h["public_key"]).strip(), "allowed_ips": allowed}
        if h.get("endpoint"):
            peer["endpoint"] = str(h["endpoint"])
        if int(h.get("persistent_keepalive") or 0) > 0:
            peer["persistent_keepalive"] = int(h["persistent_keepalive"])
        peers.append(peer)
    return {"peers": peers, "missing": missing}


class FilterModule:
    def filters(self):
        return {
            "wireguard_network": wireguard_network,
            "wireguard_is_interface": wireguard_is_interface,
            "wireguard_is_network": wireguard_is_network,
            "wireguard_is_key": wireguard_is_key,
            "wireguard_as_list": wireguard_as_list,
            "wireguard_host_route": wireguard_host_route,
            "wireguard_mesh_peers": wireguard_mesh_peers,
        }
