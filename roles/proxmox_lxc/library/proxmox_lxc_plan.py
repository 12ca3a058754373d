#!/usr/bin/python
# -*- coding: utf-8 -*-
# homelab-ai: read-only plan of what the proxmox_lxc role would change (community.proxmox.proxmox has
# no check mode), with the same comparison rules that module applies on update.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_lxc_plan
short_description: Report, read-only, what creating/updating/starting the listed LXC guests would change
description:
  - Queries C(/cluster/resources), C(/nodes/{node}/lxc/{vmid}/config), C(.../status/current) and the template
    storage listing through proxmoxer; never writes.
  - A missing guest is planned as C(create) + C(start); an existing one as C(update) for every setting whose
    requested comma-separated parts are not all in the current value (the rule community.proxmox.proxmox
    uses), and C(start) when it is not running.
  - Supports check mode and diff mode; C(changed) is true when the plan is not empty.
options:
  api_host: {type: str, required: true, description: Proxmox API host}
  api_port: {type: int, default: 8006, description: API port}
  api_user: {type: str, required: true, description: "USER@REALM"}
  api_token_id: {type: str, description: Token name (the part after "!")}
  api_token_secret: {type: str, no_log: true, description: Token secret}
  api_password: {type: str, no_log: true, description: Password (ticket auth) instead of a token}
  validate_certs: {type: bool, default: true, description: Verify TLS}
  ca_path: {type: path, description: CA bundle for the API certificate}
  guests: {type: list, elements: dict, required: true, description: Specs from the proxmox_lxc_guest_specs filter}
author: homelab-ai
"""

RETURN = r"""
plan: {description: "Per guest: name, vmid, node, exists, status, actions, changes", type: list, returned: always}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from proxmoxer import ProxmoxAPI
    HAS_PROXMOXER = True
    IMPORT_ERR = None
except ImportError:
    HAS_PROXMOXER = False
    IMPORT_ERR = traceback.format_exc()


def _bool01(value):
    return 1 if value else 0


def wanted_settings(spec):
    """Settings compared on an existing guest, in the form the API stores/returns them."""
    out = {
        "hostname": spec["hostname"],
        "cores": spec["cores"],
        "memory": spec["memory"],
        "onboot": _bool01(spec["onboot"]),
        "features": ",".join(spec.get("features") or []),
    }
    out.update(spec.get("netif") or {})
    if spec.get("swap") is not None:
        out["swap"] = spec["swap"]
    return out


def differs(current, wanted):
    """community.proxmox's update rule: strings compare as comma lists (every wanted part present)."""
    if current is None:
        return True
    if isinstance(wanted, str):
        have = str(current).split(",")
        return any(part not in have for part in wanted.split(","))
    return str(wanted) != str(current)


def rootfs_size_gb(rootfs):
    for part in str(rootfs or "").split(",")[1:]:
        if part.startswith("size="):
            val = part[5:]
            mult = {"T": 1024, "G": 1, "M": 1.0 / 1024}.get(val[-1:], None)
            try:
                return float(val[:-1]) * mult if mult else float(val) / (1024 ** 3)
            except ValueError:
                return None
    return None


def plan_guest(api, spec, resources):
    entry = {"name": spec["name"], "vmid": spec["vmid"], "node": spec["node"], "hostname": spec["hostname"],
             "exists": False, "status": None, "actions": [], "changes": {}}
    res = [r for r in resources if int(r.get("vmid", -1)) == int(spec["vmid"])]
    if not res:
        storage = spec["ostemplate"].split(":", 1)[0]
        content = api.nodes(spec["node"]).storage(storage).content.get()
        if not any(c.get("volid") == spec["ostemplate"] for c in content):
            raise ValueError("ostemplate %s does not exist on node %s and storage %s"
                             % (spec["ostemplate"], spec["node"], storage))
        entry["actions"] = ["create", "start"]
        for key, value in wanted_settings(spec).items():
            entry["changes"][key] = {"before": None, "after": value}
        entry["changes"]["ostemplate"] = {"before": None, "after": spec["ostemplate"]}
        entry["changes"]["rootfs"] = {"before": None, "after": spec["disk"]}
        entry["changes"]["unprivileged"] = {"before": None, "after": _bool01(spec["unprivileged"])}
        return entry
    r = res[0]
    if r.get("type") != "lxc":
        raise ValueError("vmid %s is a %s, not an LXC container" % (spec["vmid"], r.get("type")))
    entry["exists"] = True
    node = r.get("node", spec["node"])
    if node != spec["node"]:
        entry["changes"]["node"] = {"before": node, "after": spec["node"], "note": "not migrated by this role"}
    lxc = api.nodes(node).lxc(spec["vmid"])
    config = lxc.config.get()
    for key, value in wanted_settings(spec).items():
        if differs(config.get(key), value):
            entry["changes"][key] = {"before": config.get(key), "after": value}
    want_gb = float(spec["disk"].rsplit(":", 1)[1])
    have_gb = rootfs_size_gb(config.get("rootfs"))
    if have_gb is not None and abs(have_gb - want_gb) > 1e-6:
        entry["changes"]["rootfs"] = {"before": config.get("rootfs"), "after": "size=%gG" % want_gb}
    if entry["changes"]:
        entry["actions"].append("update")
    entry["status"] = lxc.status.current.get().get("status")
    if entry["status"] != "running":
        entry["actions"].append("start")
    return entry


def render(plan, side):
    lines = []
    for e in plan:
        for key in sorted(e["changes"]):
            value = e["changes"][key][side]
            if value is not None:
                lines.append("%s (vmid %s) %s: %s" % (e["name"], e["vmid"], key, value))
        status = e["status"] if side == "before" else "running"
        if status:
            lines.append("%s (vmid %s) status: %s" % (e["name"], e["vmid"], status))
    return "\n".join(lines) + ("\n" if lines else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            api_host=dict(type="str", required=True),
            api_port=dict(type="int", default=8006),
            api_user=dict(type="str", required=True),
            api_token_id=dict(type="str"),
            api_token_secret=dict(type="str", no_log=True),
            api_password=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            guests=dict(type="list", elements="dict", required=True),
        ),
        required_one_of=[("api_token_id", "api_password")],
        required_together=[("api_token_id", "api_token_secret")],
        supports_check_mode=True,
    )
    if not HAS_PROXMOXER:
        module.fail_json(msg=missing_required_lib("proxmoxer"), exception=IMPORT_ERR)
    p = module.params
    verify = p["ca_path"] if (p["validate_certs"] and p["ca_path"]) else p["validate_certs"]
    auth = {"user": p["api_user"], "port": p["api_port"], "verify_ssl": verify, "timeout": 30}
    if p["api_password"]:
        auth["password"] = p["api_password"]
    else:
        auth["token_name"] = p["api_token_id"]
        auth["token_value"] = p["api_token_secret"]
    try:
        api = ProxmoxAPI(p["api_host"], **auth)
        api.version.get()
        resources = api.cluster.resources.get(type="vm")
        plan = [plan_guest(api, spec, resources) for spec in p["guests"]]
        for e in plan:
            e["summary"] = "%s (vmid %s): %s" % (e["name"], e["vmid"], ", ".join(e["actions"]) or "no change")
    except Exception as e:  # proxmoxer raises plain exceptions with the API's reason
        module.fail_json(msg="Proxmox API at %s:%s: %s" % (p["api_host"], p["api_port"], e))
    changed = any(e["actions"] for e in plan)
    result = dict(changed=changed, plan=plan)
    if module._diff:
        result["diff"] = {"before": render(plan, "before"), "after": render(plan, "after"),
                          "before_header": "proxmox (current)", "after_header": "proxmox (wanted)"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
