#!/usr/bin/python
# -*- coding: utf-8 -*-
# homelab-ai: converge Kea DHCPv4 subnets + static reservations and Unbound host overrides on OPNsense
# from the inventory's hosts, through the OPNsense REST API.  Runs on the control node.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opnsense_dhcp_dns_sync
short_description: Kea DHCPv4 reservations and Unbound host overrides for every inventory host
description:
  - One Kea DHCPv4 subnet per listed VLAN (C(/api/kea/dhcpv4/searchSubnet|addSubnet|setSubnet)), matched by
    its CIDR, with the VLAN's gateway as router and DNS server and I(domain) as domain name.
  - One static reservation per host that has a MAC address (C(/api/kea/dhcpv4/*Reservation)), matched by its
    description (I(prefix) + host name); hosts without a MAC are reported in C(skipped_dhcp).
  - One Unbound A record per host (C(/api/unbound/settings/*HostOverride)), matched by (hostname, domain),
    so C(<host>.<domain>) resolves on every VLAN that uses the firewall as resolver.
  - One C(kea/service/reconfigure) and one C(unbound/service/reconfigure), each only when something changed.
  - Items carrying I(prefix) that are no longer listed are deleted only with I(remove_unlisted=true).
  - Check mode writes nothing.
options:
  api_url: {description: Base URL such as https://fw.example:443, type: str, required: true}
  api_key: {description: API key, type: str, required: true, no_log: true}
  api_secret: {description: API secret, type: str, required: true, no_log: true}
  validate_certs: {description: Verify the TLS certificate, type: bool, default: true}
  ca_path: {description: CA bundle that signed the firewall certificate, type: path}
  timeout: {description: Seconds per request, type: int, default: 30}
  vlans: {description: "List of {name, subnet[, gateway, dhcp_pool]}", type: list, elements: dict, default: []}
  hosts: {description: "List of {name, address[, mac]}", type: list, elements: dict, default: []}
  domain: {description: DNS domain of the host records, type: str, default: lan}
  manage_dhcp: {description: Converge Kea subnets and reservations, type: bool, default: true}
  dhcp_interfaces: {description: "Interface identifiers (optN) Kea must serve; added to those already served, and Kea
    enabled (empty: the service settings are left alone)", type: list, elements: str, default: []}
  manage_dns: {description: Converge Unbound host overrides, type: bool, default: true}
  prefix: {description: Description prefix marking managed items, type: str, default: "homelab-ai: "}
  remove_unlisted: {description: Delete managed items no longer listed, type: bool, default: false}
author: homelab-ai
"""

RETURN = r"""
actions: {description: Writes done (or planned in check mode), type: list, returned: always}
reconfigured: {description: "Which services were reconfigured: kea, unbound", type: list, returned: always}
skipped_dhcp: {description: Hosts without a MAC address (DNS record only), type: list, returned: always}
"""

import ipaddress
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.opnsense_api import ApiError, OPNsenseClient

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)
SUBNET_FIELDS = ("subnet", "option_data_autocollect", "option_data.routers", "option_data.domain_name_servers",
                 "option_data.domain_name", "pools", "description")
RES_FIELDS = ("subnet", "ip_address", "hw_address", "hostname", "description")
HOST_FIELDS = ("enabled", "hostname", "domain", "rr", "server", "description")


def gateway_ip(vlan):
    net = ipaddress.ip_network(vlan["subnet"], strict=False)
    return str(vlan.get("gateway") or next(net.hosts()))


def flat(row, fields):
    """searchSubnet answers option_data flattened or nested depending on the release: read both."""
    out = {}
    for f in fields:
        if "." in f:
            head, tail = f.split(".", 1)
            val = row.get(f, (row.get(head) or {}).get(tail, "") if isinstance(row.get(head), dict) else "")
        else:
            val = row.get(f, "")
        out[f] = str(val if val is not None else "")
    return out


def nest(body):
    out = {}
    for k, v in body.items():
        if "." in k:
            head, tail = k.split(".", 1)
            out.setdefault(head, {})[tail] = v
        else:
            out[k] = v
    return out


def wanted_subnets(vlans, domain, prefix):
    out = {}
    for v in vlans:
        net = str(ipaddress.ip_network(v["subnet"], strict=False))
        gw = gateway_ip(v)
        out[net] = {"subnet": net, "option_data_autocollect": "0", "option_data.routers": gw,
                    "option_data.domain_name_servers": gw, "option_data.domain_name": domain,
                    "pools": str(v.get("dhcp_pool") or ""), "description": prefix + str(v["name"])}
    return out


def host_subnet(address, subnets):
    ip = ipaddress.ip_address(address)
    for net in subnets:
        if ip in ipaddress.ip_network(net):
            return net
    return None


class Sync(object):
    def __init__(self, module, client):
        self.m, self.p, self.c = module, module.params, client
        self.check = module.check_mode
        self.actions, self.reconfigured, self.skipped = [], [], []

    def _converge(self, label, have, want, fields, add, set_, delete, wrap):
        """Generic add/update/(delete) of keyed items; returns True when something was written."""
        changed = False
        for key, body in want.items():
            cur = have.get(key)
            if cur is None:
                self.actions.append("add %s %s" % (label, key))
                if not self.check:
                    res = self.c.write(add, {wrap: nest(body)})
                    cur = {"uuid": (res or {}).get("uuid", "")}
                    have[key] = dict(body, uuid=cur["uuid"])
                changed = True
            elif any(cur[f] != body[f] for f in fields):
                self.actions.append("update %s %s" % (label, key))
                if not self.check:
                    self.c.write("%s/%s" % (set_, cur["uuid"]), {wrap: nest(body)})
                changed = True
        if self.p["remove_unlisted"]:
            for key, cur in list(have.items()):
                if key not in want and cur.get("description", "").startswith(self.p["prefix"]):
                    self.actions.append("delete %s %s" % (label, key))
                    if not self.check:
                        self.c.write("%s/%s" % (delete, cur["uuid"]))
                    changed = True
        return changed

    def kea_service(self):
        """Kea enabled on the VLAN interfaces (kea/dhcpv4/get|set general.enabled/interfaces); others kept."""
        want = [i for i in self.p["dhcp_interfaces"] if i]
        if not want:
            return False
        general = ((self.c.call("GET", "kea/dhcpv4/get") or {}).get("dhcpv4") or {}).get("general") or {}
        ifs = general.get("interfaces") or {}
        served = [k for k, v in ifs.items() if isinstance(v, dict) and str(v.get("selected", "0")) in ("1", "True")] \
            if isinstance(ifs, dict) else [x for x in str(ifs).split(",") if x]
        missing = [i for i in want if i not in served]
        if str(general.get("enabled", "0")) == "1" and not missing:
            return False
        self.actions.append("enable kea on %s" % ", ".join(sorted(set(served) | set(want))))
        if not self.check:
            self.c.write("kea/dhcpv4/set", {"dhcpv4": {"general": {
                "enabled": "1", "interfaces": ",".join(sorted(set(served) | set(want)))}}})
        return True

    def dhcp(self):
        p = self.p
        subnets = {}
        for row in self.c.search("kea/dhcpv4/searchSubnet"):
            f = flat(row, SUBNET_FIELDS)
            subnets[f["subnet"]] = dict(f, uuid=row["uuid"])
        want_s = wanted_subnets(p["vlans"], p["domain"], p["prefix"])
        changed = self._converge("kea subnet", subnets, want_s, SUBNET_FIELDS, "kea/dhcpv4/addSubnet",
                                 "kea/dhcpv4/setSubnet", "kea/dhcpv4/delSubnet", "subnet4")
        if changed and not self.check:  # read back the uuids the reservations point at
            subnets = {}
            for row in self.c.search("kea/dhcpv4/searchSubnet"):
                f = flat(row, SUBNET_FIELDS)
                subnets[f["subnet"]] = dict(f, uuid=row["uuid"])
        have_r = {}
        for row in self.c.search("kea/dhcpv4/searchReservation"):
            f = flat(row, RES_FIELDS)
            f["hw_address"] = f["hw_address"].lower()
            have_r[f["description"]] = dict(f, uuid=row["uuid"])
        want_r = {}
        for h in p["hosts"]:
            if not h.get("mac"):
                self.skipped.append(h["name"])
                continue
            net = host_subnet(h["address"], want_s)
            if net is None:
                continue  # validated before: only reached for hosts outside every listed VLAN
            uuid = subnets.get(net, {}).get("uuid", "(new subnet %s)" % net)
            want_r[p["prefix"] + h["name"]] = {
                "subnet": uuid, "ip_address": str(h["address"]), "hw_address": str(h["mac"]).lower(),
                "hostname": h["name"], "description": p["prefix"] + h["name"]}
        changed |= self._converge("kea reservation", have_r, want_r, RES_FIELDS, "kea/dhcpv4/addReservation",
                                  "kea/dhcpv4/setReservation", "kea/dhcpv4/delReservation", "reservation")
        changed |= self.kea_service()
        if changed and not self.check:
            res = self.c.call("POST", "kea/service/reconfigure")
            if str((res or {}).get("status", "")).lower() != "ok":
                raise ApiError("kea/service/reconfigure answered %r" % (res,))
            self.reconfigured.append("kea")

    def dns(self):
        p = self.p
        have = {}
        for row in self.c.search("unbound/settings/searchHostOverride"):
            f = flat(row, HOST_FIELDS)
            have["%s.%s" % (f["hostname"], f["domain"])] = dict(f, uuid=row["uuid"])
        want = {}
        for h in p["hosts"]:
            want["%s.%s" % (h["name"], p["domain"])] = {
                "enabled": "1", "hostname": h["name"], "domain": p["domain"], "rr": "A",
                "server": str(h["address"]), "description": p["prefix"] + h["name"]}
        changed = self._converge("unbound host", have, want, HOST_FIELDS, "unbound/settings/addHostOverride",
                                 "unbound/settings/setHostOverride", "unbound/settings/delHostOverride", "host")
        if changed and not self.check:
            res = self.c.call("POST", "unbound/service/reconfigure")
            if str((res or {}).get("status", "")).lower() != "ok":
                raise ApiError("unbound/service/reconfigure answered %r" % (res,))
            self.reconfigured.append("unbound")

    def run(self):
        if self.p["manage_dhcp"]:
            self.dhcp()
        if self.p["manage_dns"]:
            self.dns()
        return dict(changed=bool(self.actions), actions=self.actions, reconfigured=self.reconfigured,
                    skipped_dhcp=self.skipped)


def validate_input(module):
    """Every problem as '<host>: <field>: <reason>' (inventory validation reports the same)."""
    p = module.params
    errors, macs, names = [], {}, set()
    nets = [ipaddress.ip_network(v["subnet"], strict=False) for v in p["vlans"]]
    for h in p["hosts"]:
        name = str(h.get("name", ""))
        if not HOST_RE.match(name):
            errors.append("%s: inventory_hostname: is not a DNS label (letters, digits, '-')" % name)
        if name in names:
            errors.append("%s: inventory_hostname: listed twice" % name)
        names.add(name)
        try:
            ip = ipaddress.ip_address(str(h.get("address", "")))
        except ValueError:
            errors.append("%s: homelab_address: %r is not an IP address" % (name, h.get("address")))
            continue
        mac = str(h.get("mac") or "").lower()
        if not mac:
            continue
        if not MAC_RE.match(mac):
            errors.append("%s: homelab_mac: %r is not a MAC address like 52:54:00:12:34:56" % (name, h["mac"]))
        elif mac in macs:
            errors.append("%s: homelab_mac: %s is also the MAC of %s" % (name, mac, macs[mac]))
        macs.setdefault(mac, name)
        if not any(ip in n for n in nets):
            errors.append("%s: homelab_address: %s is in none of the VLAN subnets, so no DHCP reservation can "
                          "hold it" % (name, ip))
    if not re.match(r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?$", p["domain"], re.I):
        errors.append("opnsense: opnsense_vlans_dns_domain: %r is not a domain name" % p["domain"])
    if errors:
        module.fail_json(msg="\n".join(errors), errors=errors)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            api_url=dict(type="str", required=True),
            api_key=dict(type="str", required=True, no_log=True),
            api_secret=dict(type="str", required=True, no_log=True),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            timeout=dict(type="int", default=30),
            vlans=dict(type="list", elements="dict", default=[]),
            hosts=dict(type="list", elements="dict", default=[]),
            domain=dict(type="str", default="lan"),
            manage_dhcp=dict(type="bool", default=True),
            dhcp_interfaces=dict(type="list", elements="str", default=[]),
            manage_dns=dict(type="bool", default=True),
            prefix=dict(type="str", default="homelab-ai: "),
            remove_unlisted=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    validate_input(module)
    sync = Sync(module, OPNsenseClient(module))
    try:
        result = sync.run()
    except ApiError as e:
        module.fail_json(msg=str(e), actions=sync.actions, reconfigured=sync.reconfigured)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
