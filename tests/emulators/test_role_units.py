"""Unit tests of the pure parts of the two roles' plugins (no network, no ansible-playbook)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# the role's module_utils, importable the way Ansible ships them next to the module
sys.modules.setdefault("ansible.module_utils.opnsense_api",
                       _load("ansible.module_utils.opnsense_api", ROLES / "opnsense_vlans/module_utils/opnsense_api.py"))
sync = _load("opnsense_vlans_sync", ROLES / "opnsense_vlans/library/opnsense_vlans_sync.py")
plan = _load("proxmox_lxc_plan", ROLES / "proxmox_lxc/library/proxmox_lxc_plan.py")
filt = _load("proxmox_lxc_filters", ROLES / "proxmox_lxc/filter_plugins/proxmox_lxc.py")

VLANS = [
    {"name": "ai", "id": 20, "subnet": "10.20.0.0/24", "parent_if": "igc1", "description": "gpu", "isolated": False},
    {"name": "sandbox", "id": 66, "subnet": "10.66.0.0/24", "parent_if": "igc1", "description": "", "isolated": True},
]


def test_vlan_key_and_fields():
    want = sync.desired_vlans(VLANS)
    assert set(want) == {("igc1", "20"), ("igc1", "66")}
    assert want[("igc1", "66")]["descr"] == "sandbox"  # falls back to the name
    assert want[("igc1", "20")] == {"if": "igc1", "tag": "20", "pcp": "0", "proto": "", "descr": "gpu"}


@pytest.mark.parametrize("shown,device", [("vlan01 [SANDBOX]", "vlan01"), ("vlan02", "vlan02"),
                                          ("igc1_vlan20 [ai]", "igc1_vlan20"), (None, "")])
def test_strip_decoration(shown, device):
    assert sync.strip_decoration(shown) == device


def test_gateway_address_and_version():
    assert sync.gateway_cidr(VLANS[1]) == "10.66.0.1/24"
    assert sync.gateway_cidr(dict(VLANS[1], gateway="10.66.0.254")) == "10.66.0.254/24"
    assert sync.version_tuple("26.7.2") == (26, 7) and sync.version_tuple("25.1_4") == (25, 1)
    assert sync.version_tuple("") is None


def test_policy_rules_order_and_bands():
    rules = sync.policy_rules(VLANS, ["10.30.0.10"], [{"host": "gpu", "address": "10.20.0.11", "ports": [8000, 8000]}],
                              443, "hl: ", 100, [{"description": "extra", "action": "block", "sequence": 50}],
                              ["10.30.0.10"])
    names = list(rules)
    assert names[:2] == ["hl: allow router 10.30.0.10 to gpu:8000", "hl: block others to gpu:8000"]
    assert int(rules[names[0]]["sequence"]) < int(rules[names[1]]["sequence"])
    assert rules["hl: allow sandbox to gateway 10.30.0.10:443"]["destination_port"] == "443"
    # baseline passes come last, after every block (the sandbox's isolation blocks come first)
    base = rules["hl: baseline pass sandbox"]
    assert (base["action"], base["source_net"], base["destination_net"]) == ("pass", "10.66.0.0/24", "any")
    assert int(base["sequence"]) > max(int(r["sequence"]) for d, r in rules.items() if r["action"] == "block")
    assert {"hl: isolate sandbox from ai", "hl: isolate ai from sandbox"} <= set(rules)
    assert rules["hl: extra"]["_seq_range"] == (50, 50)
    # renumbering inside a band is not a change; leaving the band is
    allow = rules[names[0]]
    have = sync.normalise_rule(dict(sync.rule_body(allow), sequence="150", protocol="tcp"))
    assert not sync.rule_differs(have, allow)
    assert sync.rule_differs(dict(have, sequence="1500"), allow)
    assert sync.rule_differs(dict(have, destination_port="8001"), allow)


def test_interface_descr_is_opnsense_safe():
    assert sync.interface_descr("ai-sandbox.v2") == "ai_sandbox_v2"


def test_net0_and_specs():
    assert filt.lxc_net0("10.66.0.5", VLANS[1], "vmbr1") == \
        "name=eth0,bridge=vmbr1,ip=10.66.0.5/24,gw=10.66.0.1,tag=66,firewall=1"
    with pytest.raises(Exception, match="outside VLAN"):
        filt.lxc_net0("10.20.0.5", VLANS[1], "vmbr0")
    hostvars = {
        "hub": {"homelab_address": "10.66.0.5", "homelab_vlan": "sandbox",
                "lxc": {"vmid": 111, "node": "pve", "template": "debian.tar.zst", "cores": 1, "memory_mb": 512,
                        "disk_gb": 8, "nesting": True}},
        "other": {"homelab_address": "10.66.0.6", "homelab_vlan": "sandbox",
                  "lxc": {"vmid": 112, "node": "pve2", "template": "x", "cores": 1, "memory_mb": 1, "disk_gb": 1}},
    }
    specs = filt.lxc_guest_specs(["hub", "other"], hostvars, VLANS, "pve", {"template_storage": "local"})
    assert [s["name"] for s in specs] == ["hub"]
    s = specs[0]
    assert s["ostemplate"] == "local:vztmpl/debian.tar.zst" and s["disk"] == "local-lvm:8"
    assert s["features"] == ["nesting=1"] and s["unprivileged"] is True and s["ssh_host"] == "10.66.0.5"
    assert filt.lxc_unclaimed(["hub", "other"], hostvars, ["pve"]) == ["other"]
    bad = {"x": {"homelab_address": "10.66.0.7", "homelab_vlan": "nope", "lxc": dict(hostvars["hub"]["lxc"])}}
    with pytest.raises(Exception, match="not in homelab_vlans"):
        filt.lxc_guest_specs(["x"], bad, VLANS, "pve", {})


def test_plan_comparison_matches_community_proxmox_rule():
    current_net0 = "name=eth0,bridge=vmbr0,gw=10.66.0.1,hwaddr=BC:24:11:00:00:01,ip=10.66.0.5/24,tag=66,type=veth"
    assert not plan.differs(current_net0, "name=eth0,bridge=vmbr0,ip=10.66.0.5/24,gw=10.66.0.1,tag=66")
    assert plan.differs(current_net0, "name=eth0,bridge=vmbr0,ip=10.66.0.5/24,gw=10.66.0.1,tag=67")
    assert not plan.differs(2, 2) and plan.differs(2, 4) and plan.differs(None, 1)
    assert plan.rootfs_size_gb("local-lvm:vm-111-disk-0,size=8G") == 8
    assert plan.rootfs_size_gb("local-lvm:vm-111-disk-0,size=512M") == 0.5
