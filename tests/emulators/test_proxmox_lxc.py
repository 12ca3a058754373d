"""The real proxmox_lxc role (playbooks/compute.yml, community.proxmox + proxmoxer) against the Proxmox
emulator over verified TLS."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import proxmoxer

TOKEN_ID = "ansible@pve!homelab"
TOKEN_SECRET = "3f1c2a6e-0000-4000-8000-000000000001"
VLANS = [
    {"name": "servers", "id": 20, "subnet": "10.0.20.0/24", "parent_if": "vtnet1", "description": "services",
     "isolated": False},
    {"name": "sandbox", "id": 40, "subnet": "10.0.40.0/24", "parent_if": "vtnet1", "description": "sandbox",
     "isolated": True},
]
GUESTS = {
    "hub": {"homelab_address": "10.0.20.11", "homelab_vlan": "servers",
            "lxc": {"vmid": 201, "node": "pve", "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                    "cores": 2, "memory_mb": 1024, "disk_gb": 8, "storage": "local-lvm", "bridge": "vmbr0",
                    "unprivileged": True, "nesting": True, "onboot": True}},
    "gw": {"homelab_address": "10.0.20.10", "homelab_vlan": "servers",
           "lxc": {"vmid": 202, "node": "pve", "template": "debian-12-standard_12.7-1_amd64.tar.zst",
                   "cores": 1, "memory_mb": 512, "disk_gb": 4, "storage": "local-lvm", "bridge": "vmbr0",
                   "unprivileged": True, "nesting": False, "onboot": True}},
}


def inventory(emu, *, guests=None, token_id=TOKEN_ID, secret=TOKEN_SECRET, ca=None, ssh_port=None, **px_vars):
    px = {"ansible_host": "127.0.0.1", "proxmox_api_host": "127.0.0.1", "proxmox_lxc_api_port": emu.port,
          "proxmox_lxc_api_ca_path": str(ca or emu.ca), "proxmox_lxc_node": "pve"}
    if ssh_port is None:
        px["proxmox_lxc_wait_for_ssh"] = False
    else:  # the guests' ansible_host is 127.0.0.1: wait_for really waits on a listening port
        px["proxmox_lxc_ssh_port"] = ssh_port
        px["proxmox_lxc_ssh_timeout"] = 10
    px.update(px_vars)
    hosts = copy.deepcopy(guests if guests is not None else GUESTS)
    if ssh_port is not None:
        for hv in hosts.values():
            hv["ansible_host"] = "127.0.0.1"
    return {"all": {
        "vars": {"homelab_vlans": VLANS, "vault_proxmox_token_id": token_id,
                 "vault_proxmox_token_secret": secret},
        "children": {"proxmox": {"hosts": {"pve1": px}}, "lxc_guests": {"hosts": hosts}},
    }}


def test_create_start_wait_then_unchanged(proxmox, run_playbook, tmp_path):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHomelabTestKeyOnly test@control"
    first = run_playbook("compute.yml", inventory(proxmox, ssh_port=proxmox.port, proxmox_lxc_ssh_public_key=key))
    assert first.rc == 0, first.stdout + first.stderr
    assert first.changed("pve1") == 2  # create loop + start loop
    st = proxmox.state()
    hub, gw = st["guests"]["201"], st["guests"]["202"]
    assert hub["status"] == gw["status"] == "running"
    cfg = hub["config"]
    assert cfg["hostname"] == "hub" and cfg["cores"] == 2 and cfg["memory"] == 1024
    assert cfg["rootfs"] == "local-lvm:vm-201-disk-0,size=8G"
    assert cfg["features"] == "nesting=1" and cfg["unprivileged"] == 1 and cfg["onboot"] == 1
    net0 = dict(p.split("=", 1) for p in cfg["net0"].split(","))
    assert net0["tag"] == "20" and net0["ip"] == "10.0.20.11/24" and net0["gw"] == "10.0.20.1"
    assert net0["bridge"] == "vmbr0" and net0["type"] == "veth" and "hwaddr" in net0
    assert gw["config"]["features"] == "nesting=0"
    assert "lock" not in cfg
    assert hub["ssh_public_keys"] == key  # handed over at creation only
    assert {r["auth"] for r in st["requests"]} == {"token"}
    assert st["counters"]["creates"] == 2 and st["counters"]["starts"] == 2
    assert "Wait for SSH on the guests" in first.stdout

    second = run_playbook("compute.yml", inventory(proxmox, ssh_port=proxmox.port, proxmox_lxc_ssh_public_key=key))
    assert second.rc == 0, second.stdout + second.stderr
    assert second.changed("pve1") == 0
    st2 = proxmox.state()
    assert st2["counters"] == st["counters"]

    # the dynamic inventory config (roles/proxmox_lxc/files) lists what was created
    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "homelab.proxmox.yml"
    src.write_text((repo / "roles/proxmox_lxc/files/homelab.proxmox.yml").read_text())
    env = dict(os.environ, PROXMOX_URL=f"https://127.0.0.1:{proxmox.port}", PROXMOX_USER="ansible@pve",
               PROXMOX_TOKEN_ID="homelab", PROXMOX_TOKEN_SECRET=TOKEN_SECRET, REQUESTS_CA_BUNDLE=str(proxmox.ca),
               ANSIBLE_INVENTORY_ENABLED="community.proxmox.proxmox")
    out = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(src), "--list"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    inv = json.loads(out.stdout)
    assert sorted(inv["lxc_guests"]["hosts"]) == ["gw", "hub"]
    hub = {k: (v["__ansible_unsafe"] if isinstance(v, dict) and "__ansible_unsafe" in v else v)
           for k, v in inv["_meta"]["hostvars"]["hub"].items()}
    assert hub["ansible_host"] == "10.0.20.11" and hub["proxmox_vmid"] == 201
    assert hub["proxmox_status"] == "running"
    assert sorted(inv["proxmox_vlan_20"]["hosts"]) == ["gw", "hub"]


def test_check_mode_reports_and_creates_nothing(proxmox, run_playbook):
    res = run_playbook("compute.yml", inventory(proxmox), "--check", "--diff")
    assert res.rc == 0, res.stdout + res.stderr
    assert res.changed("pve1") == 1
    assert "+hub (vmid 201) net0: name=eth0,bridge=vmbr0,ip=10.0.20.11/24,gw=10.0.20.1,tag=20,firewall=1" in res.stdout
    assert "hub (vmid 201): create, start" in res.stdout
    st = proxmox.state()
    assert st["guests"] == {} and st["counters"]["writes"] == 0
    assert all(r["method"] == "GET" for r in st["requests"])


def test_drift_is_planned_in_check_mode_then_applied(proxmox, run_playbook):
    assert run_playbook("compute.yml", inventory(proxmox)).rc == 0
    # someone stops gw (ticket auth + CSRF token, as the web UI does) and the inventory asks for more cores
    api = proxmoxer.ProxmoxAPI("127.0.0.1", port=proxmox.port, user="root@pam", password="rootpass",
                               verify_ssl=str(proxmox.ca))
    upid = api.nodes("pve").lxc(202).status.stop.post()
    assert upid.startswith("UPID:pve:") and api.nodes("pve").tasks(upid).status.get()["exitstatus"] == "OK"
    assert api.nodes("pve").lxc(202).status.current.get()["status"] == "stopped"
    guests = copy.deepcopy(GUESTS)
    guests["hub"]["lxc"]["cores"] = 4

    drift = run_playbook("compute.yml", inventory(proxmox, guests=guests), "--check", "--diff")
    assert drift.rc == 0 and drift.changed("pve1") == 1, drift.stdout
    assert "-hub (vmid 201) cores: 2" in drift.stdout and "+hub (vmid 201) cores: 4" in drift.stdout
    assert "-gw (vmid 202) status: stopped" in drift.stdout and "+gw (vmid 202) status: running" in drift.stdout
    assert "gw (vmid 202): start" in drift.stdout and "hub (vmid 201): update" in drift.stdout
    st = proxmox.state()
    assert st["guests"]["201"]["config"]["cores"] == 2 and st["guests"]["202"]["status"] == "stopped"

    applied = run_playbook("compute.yml", inventory(proxmox, guests=guests))
    assert applied.rc == 0 and applied.changed("pve1") == 2, applied.stdout  # one update, one start
    st = proxmox.state()
    assert st["guests"]["201"]["config"]["cores"] == 4 and st["guests"]["202"]["status"] == "running"
    assert st["counters"]["creates"] == 2 and st["counters"]["config_puts"] == 1  # updated, not recreated

    clean = run_playbook("compute.yml", inventory(proxmox, guests=guests), "--check", "--diff")
    assert clean.rc == 0 and clean.changed("pve1") == 0, clean.stdout


def test_bad_token_fails_clearly(proxmox, run_playbook):
    res = run_playbook("compute.yml", inventory(proxmox, secret="not-the-secret"))
    assert res.rc != 0
    assert "rejected API token ansible@pve!homelab (HTTP 401)" in res.stdout
    assert "not-the-secret" not in res.stdout + res.stderr
    assert proxmox.state()["guests"] == {}


def test_untrusted_certificate_fails(proxmox, pki, run_playbook):
    res = run_playbook("compute.yml", inventory(proxmox, ca=pki.other_ca_cert))
    assert res.rc != 0
    assert "TLS verification of https://127.0.0.1" in res.stdout
    assert proxmox.state()["guests"] == {}


def test_guest_on_an_unmanaged_node_is_refused(proxmox, run_playbook):
    guests = copy.deepcopy(GUESTS)
    guests["gw"]["lxc"]["node"] = "pve2"
    res = run_playbook("compute.yml", inventory(proxmox, guests=guests))
    assert res.rc != 0
    assert "lxc_guests gw name a node (lxc.node) that no host of group proxmox manages" in res.stdout


def test_empty_proxmox_group_is_a_noop(proxmox, run_playbook):
    inv = inventory(proxmox)
    inv["all"]["children"]["proxmox"] = {"hosts": {}}
    res = run_playbook("compute.yml", inv)
    assert res.rc == 0, res.stdout + res.stderr
    assert proxmox.state()["requests"] == []
