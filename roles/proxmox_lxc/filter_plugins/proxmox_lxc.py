# homelab-ai: turn the inventory's LXC guests into community.proxmox.proxmox parameters.
from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _vlan(vlans, name, guest):
    for v in vlans or []:
        if v.get("name") == name:
            return v
    raise AnsibleFilterError("proxmox_lxc: %s: homelab_vlan %r is not in homelab_vlans" % (guest, name))


def lxc_net0(address, vlan, bridge, firewall=True):
    """net0 string: name=eth0,bridge=...,ip=<addr>/<prefix>,gw=<gateway>,tag=<vlan id>[,firewall=1]."""
    net = ipaddress.ip_network(vlan["subnet"], strict=False)
    ip = ipaddress.ip_address(address)
    if ip not in net:
        raise AnsibleFilterError("proxmox_lxc: %s is outside VLAN %s (%s)" % (address, vlan["name"], net))
    gw = vlan.get("gateway") or str(next(net.hosts()))
    parts = ["name=eth0", "bridge=%s" % bridge, "ip=%s/%d" % (ip, net.prefixlen), "gw=%s" % gw,
             "tag=%d" % int(vlan["id"])]
    if firewall:
        parts.append("firewall=1")
    return ",".join(parts)


def lxc_guest_specs(names, hostvars, vlans, node, defaults):
    """One dict per guest of this Proxmox node with everything the tasks need.

    names: inventory hostnames (group lxc_guests); hostvars: the hostvars mapping; vlans: homelab_vlans;
    node: the PVE node this play host manages; defaults: {template_storage, bridge, storage, firewall}.
    """
    specs = []
    for name in names:
        hv = hostvars[name]
        lxc = hv.get("lxc")
        if not isinstance(lxc, dict):
            raise AnsibleFilterError("proxmox_lxc: %s is in lxc_guests but has no `lxc` dict" % name)
        if str(lxc.get("node", "")) != str(node):
            continue
        for key in ("vmid", "template", "cores", "memory_mb", "disk_gb"):
            if lxc.get(key) in (None, ""):
                raise AnsibleFilterError("proxmox_lxc: %s: lxc.%s is required" % (name, key))
        if not hv.get("homelab_address") or not hv.get("homelab_vlan"):
            raise AnsibleFilterError("proxmox_lxc: %s needs homelab_address and homelab_vlan" % name)
        template = str(lxc["template"])
        if ":" not in template:
            template = "%s:vztmpl/%s" % (defaults.get("template_storage", "local"), template)
        vlan = _vlan(vlans, hv["homelab_vlan"], name)
        spec = {
            "name": name,
            "vmid": int(lxc["vmid"]),
            "node": str(lxc["node"]),
            "hostname": str(lxc.get("hostname") or name.split(".")[0]),
            "ostemplate": template,
            "cores": int(lxc["cores"]),
            "memory": int(lxc["memory_mb"]),
            "disk": "%s:%d" % (lxc.get("storage") or defaults.get("storage", "local-lvm"), int(lxc["disk_gb"])),
            "netif": {"net0": lxc_net0(hv["homelab_address"], vlan, lxc.get("bridge") or defaults.get("bridge", "vmbr0"),
                                       defaults.get("firewall", True))},
            "features": ["nesting=%d" % (1 if lxc.get("nesting", False) else 0)],
            "unprivileged": bool(lxc.get("unprivileged", True)),
            "onboot": bool(lxc.get("onboot", True)),
            "address": str(hv["homelab_address"]),
            "ssh_host": str(hv.get("ansible_host") or hv["homelab_address"]),
        }
        if lxc.get("swap_mb") not in (None, ""):
            spec["swap"] = int(lxc["swap_mb"])
        specs.append(spec)
    return specs


def lxc_unclaimed(names, hostvars, nodes):
    """Guests whose lxc.node is not managed by any Proxmox host of the play."""
    return [n for n in names if str((hostvars[n].get("lxc") or {}).get("node", "")) not in [str(x) for x in nodes]]


class FilterModule(object):
    def filters(self):
        return {
            "proxmox_lxc_guest_specs": lxc_guest_specs,
            "proxmox_lxc_net0": lxc_net0,
            "proxmox_lxc_unclaimed": lxc_unclaimed,
        }
