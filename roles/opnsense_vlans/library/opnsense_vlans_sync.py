#!/usr/bin/python
# -*- coding: utf-8 -*-
# homelab-ai: converge OPNsense VLANs, their interface assignments and the isolation rules
# through the OPNsense REST API.  Runs on the control node.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opnsense_vlans_sync
short_description: Converge OPNsense VLANs, interface assignments and isolation firewall rules
description:
  - Reads the firewall's VLANs (C(/api/interfaces/vlan_settings/searchItem)), adds or updates the listed
    ones, then runs one C(reconfigure) when something changed.
  - VLANs are matched by the pair (parent interface, tag), which OPNsense itself keeps unique.
    Description and priority are updated in place; a changed tag is a different VLAN.
  - On OPNsense 26.7 and later assigns each VLAN device to an interface (C(/api/interfaces/assignment/*))
    with the first host address of the subnet (or I(gateway)) as static IPv4; on older releases it
    warns that assignment has to be done in the GUI.
  - Maintains floating firewall rules (C(/api/firewall/filter/*), one C(apply) when something changed):
    only the router sources reach the engine ports, isolated VLANs are cut off from the other listed
    VLANs except HTTPS to the gateway (Caddy), and each VLAN gets a baseline pass after every block.
    Managed rules are matched by their description, which starts with I(rule_prefix).
  - Items that are not listed are deleted only when I(remove_unlisted=true) (VLANs only on the parent
    interfaces in use by the listed VLANs; rules only when they carry I(rule_prefix)).
  - Supports check mode and diff mode (nothing is written in check mode).
options:
  api_url: {description: Base URL such as https://fw.example:443, type: str, required: true}
  api_key: {description: API key, type: str, required: true, no_log: true}
  api_secret: {description: API secret, type: str, required: true, no_log: true}
  validate_certs: {description: Verify the TLS certificate, type: bool, default: true}
  ca_path: {description: CA bundle that signed the firewall certificate, type: path}
  timeout: {description: Seconds per request, type: int, default: 30}
  vlans: {description: "List of {name, id, subnet, parent_if, description, isolated[, gateway, pcp]}", type: list, elements: dict, default: []}
  assign_interfaces: {description: Assign VLAN devices to interfaces where the API offers it, type: bool, default: true}
  manage_rules: {description: Maintain the isolation rules, type: bool, default: true}
  router_sources: {description: Addresses allowed to reach engine ports, type: list, elements: str, default: []}
  engine_targets: {description: "List of {host, address, ports}", type: list, elements: dict, default: []}
  sandbox_gateway_port: {description: "HTTPS port isolated VLANs may still reach on the gateway addresses (0 = none)", type: int, default: 0}
  gateway_addresses: {description: "Addresses of the gateway (Caddy) hosts (default: router_sources)", type: list, elements: str}
  baseline_pass: {description: One pass rule per VLAN after all blocks, type: bool, default: true}
  extra_rules: {description: Additional rule bodies (firewall/filter fields; description required), type: list, elements: dict, default: []}
  rule_prefix: {description: Description prefix marking managed rules, type: str, default: "homelab-ai: "}
  rule_sequence_start: {description: First sequence number of the managed rules, type: int, default: 100}
  remove_unlisted: {description: Delete unlisted VLANs/assignments/managed rules, type: bool, default: false}
  firmware_version: {description: Skip detection and assume this version, type: str, default: ""}
author: homelab-ai
"""

RETURN = r"""
firmware_version: {description: Detected or given version, type: str, returned: always}
assignment_supported: {description: Whether the interface assignment API exists (26.7+), type: bool, returned: always}
actions: {description: Human-readable list of writes done (or planned in check mode), type: list, returned: always}
vlans: {description: "Listed VLANs with their uuid, device and interface identifier (optN; 26.7+) after the run", type: list, returned: always}
reconfigured: {description: "Which apply calls ran: vlan, assignment, filter", type: list, returned: always}
"""

import ipaddress
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.opnsense_api import ApiError, OPNsenseClient, version_tuple

RULE_FIELDS = ("enabled", "action", "quick", "interface", "direction", "ipprotocol", "protocol",
               "source_net", "source_port", "destination_net", "destination_port", "log", "sequence",
               "description")
ASSIGN_FIELDS = ("descr", "if", "enable", "type4", "ipaddr")
ASSIGNMENT_MIN_VERSION = (26, 7)


def strip_decoration(vlanif):
    """searchItem shows an assigned device as 'vlan01 [DESCR]'; keep the device name."""
    return (vlanif or "").split(" [", 1)[0].strip()


def interface_descr(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:255]


def gateway_cidr(vlan):
    net = ipaddress.ip_network(vlan["subnet"], strict=False)
    gw = vlan.get("gateway") or str(next(net.hosts()))
    return "%s/%d" % (gw, net.prefixlen)


def desired_vlans(vlans):
    out = {}
    for v in vlans:
        key = (str(v["parent_if"]), str(int(v["id"])))
        out[key] = {
            "if": key[0], "tag": key[1], "pcp": str(v.get("pcp", 0)), "proto": "",
            "descr": str(v.get("description") or v["name"]),
        }
    return out


SEQUENCE_BAND = 1000


def policy_rules(vlans, router_sources, engine_targets, sandbox_gateway_port, prefix, seq_start, extra,
                 gateway_addresses=None, baseline_pass=True):
    """The floating rules that express the homelab policy, keyed by description.

    Rules come in bands whose order matters (pass to engines before block, sandbox-to-router pass
    before isolation blocks); within a band the order does not, so each rule carries the band range
    it may sit in (``_band``) and an existing rule is only renumbered when it left its band.
    """
    rules = []

    def add(band, description, **fields):
        body = {"enabled": "1", "quick": "1", "interface": "", "direction": "in", "ipprotocol": "inet",
                "protocol": "any", "source_net": "any", "source_port": "", "destination_net": "any",
                "destination_port": "", "log": "0", "action": "pass"}
        body.update({k: str(v) for k, v in fields.items()})
        body["description"] = prefix + description
        body["_band"] = band
        rules.append(body)

    for t in engine_targets:
        for port in sorted({int(p) for p in t.get("ports", [])}):
            for src in router_sources:
                add(0, "allow router %s to %s:%d" % (src, t["host"], port), action="pass", protocol="TCP",
                    source_net=src, destination_net=t["address"], destination_port=port)
    for t in engine_targets:
        for port in sorted({int(p) for p in t.get("ports", [])}):
            add(1, "block others to %s:%d" % (t["host"], port), action="block", protocol="TCP", log="1",
                destination_net=t["address"], destination_port=port)
    for s in [v for v in vlans if v.get("isolated")]:
        if sandbox_gateway_port:
            for dst in gateway_addresses if gateway_addresses is not None else router_sources:
                add(2, "allow %s to gateway %s:%d" % (s["name"], dst, sandbox_gateway_port), action="pass",
                    protocol="TCP", source_net=s["subnet"], destination_net=dst,
                    destination_port=sandbox_gateway_port)
        for o in [v for v in vlans if v["name"] != s["name"]]:
            add(3, "isolate %s from %s" % (s["name"], o["name"]), action="block", log="1",
                source_net=s["subnet"], destination_net=o["subnet"])
            add(3, "isolate %s from %s" % (o["name"], s["name"]), action="block", log="1",
                source_net=o["subnet"], destination_net=s["subnet"])
    for r in extra:
        body = {k: str(v) for k, v in r.items() if k != "description"}
        add(4, str(r["description"]), **body)
    if baseline_pass:
        # after every block: each VLAN may open connections anywhere the bands above did not close
        # (an isolated VLAN thus reaches the internet and the gateway's HTTPS, nothing else listed)
        for v in vlans:
            add(5, "baseline pass %s" % v["name"], action="pass", source_net=v["subnet"])
    out = {}
    counts = {}
    for r in rules:
        band = r.pop("_band")
        lo = seq_start + band * SEQUENCE_BAND
        if r.get("sequence"):
            r["_seq_range"] = (int(r["sequence"]), int(r["sequence"]))
        else:
            r["sequence"] = str(lo + counts.get(band, 0))
            r["_seq_range"] = (lo, lo + SEQUENCE_BAND - 1)
        counts[band] = counts.get(band, 0) + 1
        out[r["description"]] = r
    return out


def rule_differs(have, want):
    """True when an existing (normalised) rule must be rewritten to match the wanted one."""
    lo, hi = want["_seq_range"]
    want_n = normalise_rule(want)
    for k in RULE_FIELDS:
        if k == "sequence":
            try:
                if not lo <= int(have[k]) <= hi:
                    return True
            except ValueError:
                return True
        elif have[k] != want_n[k]:
            return True
    return False


def rule_body(want):
    return {k: v for k, v in want.items() if not k.startswith("_")}


def normalise_rule(row):
    out = {k: str(row.get(k, "")) for k in RULE_FIELDS}
    if out["protocol"].lower() == "any" or out["protocol"] == "":
        out["protocol"] = "any"
    else:
        out["protocol"] = out["protocol"].upper()
    return out


class Sync(object):
    def __init__(self, module, client):
        self.m = module
        self.p = module.params
        self.c = client
        self.check = module.check_mode
        self.actions = []
        self.reconfigured = []
        self.before = {"vlans": {}, "assignments": {}, "rules": {}}
        self.after = {"vlans": {}, "assignments": {}, "rules": {}}

    # ------------------------------------------------------------ version
    def firmware_version(self):
        if self.p["firmware_version"]:
            return self.p["firmware_version"]
        res = self.c.call("GET", "core/firmware/status")
        product = res.get("product") if isinstance(res, dict) else None
        version = (product or {}).get("product_version") or (res or {}).get("product_version")
        if not version:
            raise ApiError("could not read the firmware version from core/firmware/status; "
                           "set opnsense_vlans_firmware_version")
        return version

    # ------------------------------------------------------------ vlans
    def read_vlans(self):
        found = {}
        for row in self.c.search("interfaces/vlan_settings/searchItem"):
            key = (str(row.get("if", "")), str(row.get("tag", "")))
            found[key] = {"uuid": row["uuid"], "if": key[0], "tag": key[1], "pcp": str(row.get("pcp", "0")),
                          "proto": str(row.get("proto", "")), "descr": str(row.get("descr", "")),
                          "vlanif": strip_decoration(row.get("vlanif"))}
        return found

    @staticmethod
    def _vlan_label(key):
        return "%s tag %s" % key

    def plan_vlans(self, current, wanted):
        adds, sets, dels = [], [], []
        for key, want in wanted.items():
            have = current.get(key)
            if have is None:
                adds.append((key, want))
            elif any(have[f] != want[f] for f in ("pcp", "descr")):
                sets.append((key, have["uuid"], want))
        if self.p["remove_unlisted"]:
            parents = {k[0] for k in wanted}
            for key, have in current.items():
                if key not in wanted and key[0] in parents:
                    dels.append((key, have))
        return adds, sets, dels

    # ------------------------------------------------------------ assignments
    def read_assignments(self):
        found = {}
        for row in self.c.search("interfaces/assignment/searchItem"):
            found[str(row.get("if", ""))] = {
                "identifier": row.get("identifier") or row.get("uuid"),
                **{f: str(row.get(f, "")) for f in ASSIGN_FIELDS}}
        return found

    # ------------------------------------------------------------ rules
    def read_rules(self):
        prefix = self.p["rule_prefix"]
        found = {}
        for row in self.c.search("firewall/filter/searchRule"):
            if row.get("legacy") or not str(row.get("description", "")).startswith(prefix):
                continue
            found[row["description"]] = dict(normalise_rule(row), uuid=row["uuid"])
        return found

    # ------------------------------------------------------------ run
    def run(self):
        p = self.p
        version = self.firmware_version()
        vt = version_tuple(version)
        assignment_supported = bool(vt and vt >= ASSIGNMENT_MIN_VERSION)
        do_assign = p["assign_interfaces"] and assignment_supported
        if p["assign_interfaces"] and not assignment_supported and p["vlans"]:
            self.m.warn("OPNsense %s has no interface assignment API (it arrived in 26.7): the VLAN devices "
                        "were created but must be assigned in Interfaces > Assignments by hand; set "
                        "opnsense_vlans_assign_interfaces=false to silence this." % version)

        wanted = desired_vlans(p["vlans"])
        current = self.read_vlans()
        for key, have in current.items():
            self.before["vlans"][self._vlan_label(key)] = {k: have[k] for k in ("descr", "pcp", "vlanif")}
        adds, sets, dels = self.plan_vlans(current, wanted)

        assignments = self.read_assignments() if do_assign else {}
        for dev, a in assignments.items():
            self.before["assignments"][a["identifier"]] = {f: a[f] for f in ASSIGN_FIELDS}

        # 1. unassign VLAN devices that are about to be removed (delItem refuses assigned devices)
        unassigned = False
        for key, have in dels:
            a = assignments.get(have["vlanif"])
            if a is not None:
                self.actions.append("unassign %s (%s)" % (a["identifier"], have["vlanif"]))
                if not self.check:
                    self.c.write("interfaces/assignment/delItem/%s" % a["identifier"])
                unassigned = True
        if unassigned and not self.check:
            self.c.call("POST", "interfaces/assignment/reconfigure")
            self.reconfigured.append("assignment")

        # 2. VLAN devices: add, update, delete, then one reconfigure
        vlan_changed = False
        for key, want in adds:
            self.actions.append("add vlan %s (%s)" % (self._vlan_label(key), want["descr"]))
            if not self.check:
                self.c.write("interfaces/vlan_settings/addItem", {"vlan": want})
            vlan_changed = True
        for key, uuid, want in sets:
            self.actions.append("update vlan %s (%s)" % (self._vlan_label(key), want["descr"]))
            if not self.check:
                self.c.write("interfaces/vlan_settings/setItem/%s" % uuid, {"vlan": want})
            vlan_changed = True
        for key, have in dels:
            if assignments.get(have["vlanif"]) is not None and self.check:
                pass  # would be unassigned first, see above
            self.actions.append("delete vlan %s (%s)" % (self._vlan_label(key), have["vlanif"]))
            if not self.check:
                res = self.c.call("POST", "interfaces/vlan_settings/delItem/%s" % have["uuid"])
                if isinstance(res, dict) and res.get("result") not in ("deleted", "not found"):
                    raise ApiError("OPNsense refused to delete VLAN %s: %r" % (self._vlan_label(key), res))
            vlan_changed = True
        if vlan_changed and not self.check:
            res = self.c.call("POST", "interfaces/vlan_settings/reconfigure")
            if str((res or {}).get("status", "")).lower() not in ("ok",):
                raise ApiError("interfaces/vlan_settings/reconfigure answered %r" % (res,))
            self.reconfigured.append("vlan")

        after_vlans = self.read_vlans() if (vlan_changed and not self.check) else dict(current)
        if self.check:
            for key, want in adds:
                after_vlans[key] = dict(want, uuid="(new)", vlanif="(new device for tag %s)" % key[1])
            for key, uuid, want in sets:
                after_vlans[key] = dict(after_vlans[key], **want)
            for key, _have in dels:
                after_vlans.pop(key, None)
        for key, have in after_vlans.items():
            self.after["vlans"][self._vlan_label(key)] = {k: have[k] for k in ("descr", "pcp", "vlanif")}

        # 3. interface assignments (26.7+), one reconfigure
        after_assign = {}
        if do_assign:
            if unassigned and not self.check:
                assignments = self.read_assignments()
            after_assign = {dev: dict(a) for dev, a in assignments.items()}
            for _key, have in dels:
                after_assign.pop(have["vlanif"], None)
            assign_changed = False
            for v in p["vlans"]:
                key = (str(v["parent_if"]), str(int(v["id"])))
                dev = after_vlans.get(key, {}).get("vlanif")
                want = {"descr": interface_descr(v["name"]), "if": dev, "enable": "1", "type4": "staticv4",
                        "ipaddr": gateway_cidr(v)}
                have = assignments.get(dev)
                if have is None:
                    self.actions.append("assign %s to interface %s (%s)" % (dev, want["descr"], want["ipaddr"]))
                    ident = "new:%s" % want["descr"]
                    if not self.check:
                        res = self.c.write("interfaces/assignment/addItem", {"interface": dict(want, lock="0")})
                        ident = res.get("uuid", ident)
                    after_assign[dev] = dict(want, identifier=ident)
                    assign_changed = True
                elif any(have[f] != want[f] for f in ASSIGN_FIELDS):
                    self.actions.append("update interface %s (%s)" % (have["identifier"], dev))
                    if not self.check:
                        self.c.write("interfaces/assignment/setItem/%s" % have["identifier"], {"interface": want})
                    after_assign[dev] = dict(want, identifier=have["identifier"])
                    assign_changed = True
            if assign_changed and not self.check:
                res = self.c.call("POST", "interfaces/assignment/reconfigure")
                if str((res or {}).get("status", "")).lower() != "ok":
                    raise ApiError("interfaces/assignment/reconfigure answered %r" % (res,))
                self.reconfigured.append("assignment")
            for dev, a in after_assign.items():
                self.after["assignments"][a["identifier"]] = {f: a.get(f, "") for f in ASSIGN_FIELDS}

        # 4. firewall rules, one apply
        if p["manage_rules"]:
            wanted_rules = policy_rules(p["vlans"], p["router_sources"], p["engine_targets"],
                                        p["sandbox_gateway_port"], p["rule_prefix"], p["rule_sequence_start"],
                                        p["extra_rules"], p["gateway_addresses"], p["baseline_pass"])
            have_rules = self.read_rules()
            for d, r in have_rules.items():
                self.before["rules"][d] = {k: v for k, v in r.items() if k not in ("uuid", "description")}
            rules_changed = False
            after_rules = {d: dict(r) for d, r in have_rules.items()}
            for d, want in wanted_rules.items():
                want_n = normalise_rule(want)
                have = have_rules.get(d)
                if have is None:
                    self.actions.append("add rule '%s'" % d)
                    if not self.check:
                        self.c.write("firewall/filter/addRule", {"rule": rule_body(want)})
                    rules_changed = True
                    after_rules[d] = want_n
                elif rule_differs(have, want):
                    self.actions.append("update rule '%s'" % d)
                    if not self.check:
                        self.c.write("firewall/filter/setRule/%s" % have["uuid"], {"rule": rule_body(want)})
                    rules_changed = True
                    after_rules[d] = want_n
            if p["remove_unlisted"]:
                for d, have in have_rules.items():
                    if d not in wanted_rules:
                        self.actions.append("delete rule '%s'" % d)
                        if not self.check:
                            self.c.call("POST", "firewall/filter/delRule/%s" % have["uuid"])
                        after_rules.pop(d, None)
                        rules_changed = True
            if rules_changed and not self.check:
                res = self.c.call("POST", "firewall/filter/apply")
                if not str((res or {}).get("status", "")).strip().lower().startswith("ok"):
                    raise ApiError("firewall/filter/apply answered %r" % (res,))
                self.reconfigured.append("filter")
            for d, r in after_rules.items():
                self.after["rules"][d] = {k: v for k, v in r.items() if k not in ("uuid", "description")}

        vlan_report = []
        for v in p["vlans"]:
            key = (str(v["parent_if"]), str(int(v["id"])))
            have = after_vlans.get(key, {})
            ident = str((after_assign.get(have.get("vlanif")) or {}).get("identifier") or "")
            vlan_report.append({"name": v["name"], "parent_if": key[0], "tag": int(key[1]),
                                "uuid": have.get("uuid"), "device": have.get("vlanif"),
                                "interface": "" if ident.startswith("new:") else ident})
        return dict(changed=bool(self.actions), actions=self.actions, reconfigured=self.reconfigured,
                    firmware_version=version, assignment_supported=assignment_supported, vlans=vlan_report)


def render(state):
    """Stable text for diff mode: one line per item and field."""
    lines = []
    for section in ("vlans", "assignments", "rules"):
        for name in sorted(state[section]):
            fields = state[section][name]
            lines.append("%s[%s]: %s" % (section, name, ", ".join(
                "%s=%s" % (k, fields[k]) for k in sorted(fields))))
    return "\n".join(lines) + "\n"


def validate_input(module):
    names = set()
    for v in module.params["vlans"]:
        for field in ("name", "id", "subnet", "parent_if"):
            if field not in v or v[field] in (None, ""):
                module.fail_json(msg="vlans: entry %r lacks %s" % (v, field))
        if v["name"] in names:
            module.fail_json(msg="vlans: duplicate name %s" % v["name"])
        names.add(v["name"])
        try:
            ipaddress.ip_network(v["subnet"], strict=False)
            tag = int(v["id"])
        except ValueError as e:
            module.fail_json(msg="vlans: %s: %s" % (v["name"], e))
        if not 1 <= tag <= 4094:
            module.fail_json(msg="vlans: %s: id %s is outside 1-4094" % (v["name"], tag))
    for r in module.params["extra_rules"]:
        if not r.get("description"):
            module.fail_json(msg="extra_rules: every rule needs a description (it is the match key)")


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
            assign_interfaces=dict(type="bool", default=True),
            manage_rules=dict(type="bool", default=True),
            router_sources=dict(type="list", elements="str", default=[]),
            engine_targets=dict(type="list", elements="dict", default=[]),
            sandbox_gateway_port=dict(type="int", default=0),
            gateway_addresses=dict(type="list", elements="str"),
            baseline_pass=dict(type="bool", default=True, no_log=False),
            extra_rules=dict(type="list", elements="dict", default=[]),
            rule_prefix=dict(type="str", default="homelab-ai: "),
            rule_sequence_start=dict(type="int", default=100),
            remove_unlisted=dict(type="bool", default=False),
            firmware_version=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    validate_input(module)
    sync = Sync(module, OPNsenseClient(module))
    try:
        result = sync.run()
    except ApiError as e:
        module.fail_json(msg=str(e), actions=sync.actions, reconfigured=sync.reconfigured)
    if module._diff:
        result["diff"] = {"before": render(sync.before), "after": render(sync.after),
                          "before_header": "opnsense (current)", "after_header": "opnsense (wanted)"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
