"""Site-network rules that look at several hosts at once, shared by inventory validation
(homelab_site_roles.cross_host_problems) and mirrored by the roles that act on them: the DHCP reservations and
DNS records opnsense_vlans derives from every host (its module opnsense_dhcp_dns_sync.py refuses the same before
any write), and the WireGuard mesh of group wireguard (its filter wireguard_mesh_peers refuses overlaps).
Each problem is (host, field, reason)."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any


def _is_network(v: Any) -> bool:
    try:
        ipaddress.ip_network(str(v), strict=False)
    except ValueError:
        return False
    return isinstance(v, str)


MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def network_host_problems(hostvars: Mapping[str, Mapping[str, Any]], vlans: Any) -> list[tuple[str, str, str]]:
    """(host, field, reason) for the DHCP reservations / DNS records opnsense_vlans derives from every host
    (its module opnsense_dhcp_dns_sync.py refuses the same before any write)."""
    nets = []
    for vl in vlans if isinstance(vlans, list) else []:
        if isinstance(vl, Mapping) and _is_network(vl.get("subnet")):
            nets.append(ipaddress.ip_network(str(vl["subnet"]), strict=False))
    out: list[tuple[str, str, str]] = []
    macs: dict[str, str] = {}
    for host in sorted(hostvars):
        hv = hostvars[host] or {}
        address, mac = hv.get("homelab_address"), hv.get("homelab_mac")
        if address and not DNS_LABEL_RE.match(host):
            out.append((host, "inventory_hostname", "is not a DNS label (letters, digits, '-'), so OPNsense "
                                                    "cannot publish <host>.<domain> for it (role opnsense_vlans)"))
        if mac in (None, ""):
            continue
        if not isinstance(mac, str) or not MAC_RE.match(mac):
            out.append((host, "homelab_mac", f"{mac!r} is not a MAC address like 52:54:00:12:34:56 "
                                             "(role opnsense_vlans)"))
            continue
        if mac.lower() in macs:
            out.append((host, "homelab_mac", f"{mac.lower()} is also the MAC of {macs[mac.lower()]} "
                                             "(role opnsense_vlans)"))
        macs.setdefault(mac.lower(), host)
        if not address:
            out.append((host, "homelab_address", "is required for the DHCP reservation homelab_mac asks for "
                                                 "(role opnsense_vlans)"))
        elif nets:
            try:
                ip = ipaddress.ip_address(str(address))
            except ValueError:
                continue  # reported by the address checks of validation
            if not any(ip in n for n in nets):
                out.append((host, "homelab_address", f"{ip} is in none of the VLAN subnets, so no DHCP "
                                                     "reservation can hold it (role opnsense_vlans)"))
    return out


def wireguard_mesh_problems(addresses: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host, field, reason) for the mesh of the wireguard group: ``addresses`` maps each member to its
    wireguard_address; every member needs its own address, all in one tunnel subnet."""
    out: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    nets: dict[str, str] = {}
    for host in sorted(addresses):
        try:
            iface = ipaddress.ip_interface(str(addresses[host]))
        except ValueError:
            continue  # reported by rules_wireguard
        ip = str(iface.ip)
        if ip in seen:
            out.append((host, "wireguard_address", f"{ip} is also the tunnel address of {seen[ip]}: every host "
                                                   "of the wireguard mesh needs its own (role wireguard)"))
        seen.setdefault(ip, host)
        first = next(iter(nets.items()), None)
        if first and str(iface.network) != first[0]:
            out.append((host, "wireguard_address", f"tunnel subnet {iface.network} differs from {first[0]} of "
                                                   f"{first[1]}: the mesh shares one tunnel subnet (role wireguard)"))
        nets.setdefault(str(iface.network), host)
    return out


class FilterModule:
    """No filters of its own: imported by homelab_site_roles.py."""

    def filters(self) -> dict[str, Any]:
        return {}
