"""The whole network on OPNsense: baseline pass rules per VLAN, the AI sandbox isolated except the gateway's
HTTPS, Kea DHCPv4 reservations and Unbound host overrides for every inventory host — the real role
(playbooks/network.yml) against the OPNsense emulator, entries checked, a rerun changes nothing."""

from __future__ import annotations

import copy

import pytest

from test_opnsense_vlans import VLANS, managed_rules

HOSTS = {
    "gw": {"homelab_address": "10.0.20.10", "homelab_vlan": "servers", "homelab_mac": "52:54:00:00:20:10"},
    "gpu1": {"homelab_address": "10.0.30.10", "homelab_vlan": "gpu", "homelab_mac": "52:54:00:00:30:10",
             "engines": [{"route": "chat", "runtime": "vllm", "port": 8000}]},
    "nas": {"homelab_address": "10.0.20.20", "homelab_vlan": "servers"},  # no MAC: DNS record only
}


def inventory(emu, hosts=None, **fw_vars):
    hosts = copy.deepcopy(hosts if hosts is not None else HOSTS)
    fw = {"ansible_host": "127.0.0.1", "opnsense_vlans_api_port": emu.port,
          "opnsense_vlans_api_ca_path": str(emu.ca), **fw_vars}
    return {"all": {
        "vars": {"homelab_vlans": copy.deepcopy(VLANS), "homelab_router_port": 4000,
                 "vault_opnsense_api_key": "homelab-key", "vault_opnsense_api_secret": "homelab-secret"},
        "hosts": {h: v for h, v in hosts.items() if h not in ("gw", "gpu1")},
        "children": {
            "firewall": {"hosts": {"fw": fw}},
            "gateway": {"hosts": {"gw": hosts["gw"]}},
            "gpu_nodes": {"hosts": {"gpu1": hosts["gpu1"]}},
        },
    }}


def test_whole_network_converges_and_a_rerun_changes_nothing(opnsense, run_playbook):
    first = run_playbook("network.yml", inventory(opnsense))
    assert first.rc == 0, first.stdout + first.stderr
    st = opnsense.state()

    # Kea: one subnet per VLAN, gateway as router and DNS server, applied once
    subnets = {s["subnet"]: s for s in st["kea"]["subnets"].values()}
    assert set(subnets) == {v["subnet"] for v in VLANS}
    gpu = subnets["10.0.30.0/24"]
    assert gpu["option_data"]["routers"] == gpu["option_data"]["domain_name_servers"] == "10.0.30.1"
    assert gpu["option_data"]["domain_name"] == "lan"
    # one reservation per host with a MAC, inside its VLAN's subnet
    res = {r["hostname"]: r for r in st["kea"]["reservations"].values()}
    assert set(res) == {"gw", "gpu1"}
    assert (res["gpu1"]["ip_address"], res["gpu1"]["hw_address"]) == ("10.0.30.10", "52:54:00:00:30:10")
    assert st["kea"]["subnets"][res["gpu1"]["subnet"]]["subnet"] == "10.0.30.0/24"
    assert "nas" in first.stdout  # reported as having no reservation (no homelab_mac)
    assert st["counters"]["kea_reconfigure"] == 1 and st["running"]["kea"] == st["kea"]
    # Kea serves every VLAN interface the role assigned (optN of each VLAN device)
    vlan_ifs = {k for k, i in st["interfaces"].items() if i.get("if", "").startswith("vlan0")}
    assert len(vlan_ifs) == len(VLANS)
    assert st["kea"]["general"]["enabled"] == "1"
    assert set(st["kea"]["general"]["interfaces"].split(",")) == vlan_ifs

    # Unbound: an A record per addressed host, so ai-gateway-like names resolve
    hosts = {f'{h["hostname"]}.{h["domain"]}': h for h in st["unbound"]["hosts"].values()}
    assert set(hosts) == {"gw.lan", "gpu1.lan", "nas.lan"}
    assert (hosts["gw.lan"]["rr"], hosts["gw.lan"]["server"], hosts["gw.lan"]["enabled"]) == ("A", "10.0.20.10", "1")
    assert st["counters"]["unbound_reconfigure"] == 1 and st["running"]["unbound"] == st["unbound"]

    # rules: the sandbox reaches the gateway's HTTPS only; every VLAN has its baseline pass after all blocks
    rules = managed_rules(st)
    https = rules["homelab-ai: allow sandbox to gateway 10.0.20.10:443"]
    assert (https["action"], https["source_net"], https["destination_net"], https["destination_port"],
            https["protocol"]) == ("pass", "10.0.40.0/24", "10.0.20.10", "443", "TCP")
    assert not any("to router" in d and "sandbox" in d for d in rules)
    blocks = [int(r["sequence"]) for r in rules.values() if r["action"] == "block"]
    for v in VLANS:
        base = rules[f"homelab-ai: baseline pass {v['name']}"]
        assert (base["action"], base["source_net"], base["destination_net"]) == ("pass", v["subnet"], "any")
        assert int(base["sequence"]) > max(blocks)
    assert int(https["sequence"]) < min(int(r["sequence"]) for d, r in rules.items() if "isolate sandbox" in d)

    writes = st["counters"]["writes"]
    second = run_playbook("network.yml", inventory(opnsense))
    assert second.rc == 0, second.stdout + second.stderr
    assert second.changed("fw") == 0
    st2 = opnsense.state()
    assert st2["counters"]["writes"] == writes
    assert (st2["counters"]["kea_reconfigure"], st2["counters"]["unbound_reconfigure"]) == (1, 1)


def test_changed_address_and_mac_update_in_place_then_removal_only_with_flag(opnsense, run_playbook):
    assert run_playbook("network.yml", inventory(opnsense)).rc == 0
    hosts = copy.deepcopy(HOSTS)
    hosts["gpu1"].update(homelab_address="10.0.30.11", homelab_mac="52:54:00:00:30:11")
    res = run_playbook("network.yml", inventory(opnsense, hosts))
    assert res.rc == 0, res.stdout + res.stderr
    st = opnsense.state()
    r = [x for x in st["kea"]["reservations"].values() if x["hostname"] == "gpu1"]
    assert len(r) == 1 and (r[0]["ip_address"], r[0]["hw_address"]) == ("10.0.30.11", "52:54:00:00:30:11")
    assert [h["server"] for h in st["unbound"]["hosts"].values() if h["hostname"] == "gpu1"] == ["10.0.30.11"]

    del hosts["nas"]
    kept = run_playbook("network.yml", inventory(opnsense, hosts))
    assert kept.rc == 0 and kept.changed("fw") == 0, kept.stdout
    assert "nas" in {h["hostname"] for h in opnsense.state()["unbound"]["hosts"].values()}
    gone = run_playbook("network.yml", inventory(opnsense, hosts, opnsense_vlans_remove_unlisted=True))
    assert gone.rc == 0, gone.stdout + gone.stderr
    assert "nas" not in {h["hostname"] for h in opnsense.state()["unbound"]["hosts"].values()}


def test_check_mode_writes_no_dhcp_or_dns(opnsense, run_playbook):
    res = run_playbook("network.yml", inventory(opnsense), "--check")
    assert res.rc == 0, res.stdout + res.stderr
    st = opnsense.state()
    assert st["kea"]["subnets"] == {} and st["kea"]["reservations"] == {} and st["unbound"] == {"hosts": {}}
    assert st["kea"]["general"] == {"enabled": "0", "interfaces": ""}
    assert "add kea reservation homelab-ai: gpu1" in res.stdout


@pytest.mark.parametrize("host,change,message", [
    ("gpu1", {"homelab_mac": "52:54:00:00:30"}, "gpu1: homelab_mac: '52:54:00:00:30' is not a MAC address"),
    ("gpu1", {"homelab_mac": "52:54:00:00:20:10"}, "homelab_mac: 52:54:00:00:20:10 is also the MAC of"),
    ("gpu1", {"homelab_address": "10.9.9.9"}, "gpu1: homelab_address: 10.9.9.9 is in none of the VLAN subnets"),
])
def test_broken_hosts_are_refused_before_any_dhcp_dns_write(opnsense, run_playbook, host, change, message):
    hosts = copy.deepcopy(HOSTS)
    hosts[host].update(change)
    res = run_playbook("network.yml", inventory(opnsense, hosts))
    assert res.rc != 0
    assert message in res.stdout
    st = opnsense.state()
    assert st["kea"]["reservations"] == {} and st["unbound"]["hosts"] == {}


def test_dhcp_and_dns_can_be_left_alone(opnsense, run_playbook):
    res = run_playbook("network.yml", inventory(opnsense, opnsense_vlans_manage_dhcp=False,
                                                opnsense_vlans_manage_dns=False))
    assert res.rc == 0, res.stdout + res.stderr
    assert not any(p in r["path"] for r in opnsense.state()["requests"] for p in ("/kea/", "/unbound/"))
