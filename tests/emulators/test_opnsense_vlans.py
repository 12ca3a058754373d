"""The real opnsense_vlans role (playbooks/network.yml) against the OPNsense emulator over verified TLS."""

from __future__ import annotations

import copy

import pytest

VLANS = [
    {"name": "mgmt", "id": 10, "subnet": "10.0.10.0/24", "parent_if": "vtnet1",
     "description": "management", "isolated": False},
    {"name": "servers", "id": 20, "subnet": "10.0.20.0/24", "parent_if": "vtnet1",
     "description": "always-on services", "isolated": False},
    {"name": "gpu", "id": 30, "subnet": "10.0.30.0/24", "parent_if": "vtnet1",
     "description": "gpu nodes", "isolated": False},
    {"name": "sandbox", "id": 40, "subnet": "10.0.40.0/24", "parent_if": "vtnet1",
     "description": "ai sandbox", "isolated": True},
]


def inventory(emu, *, vlans=None, key="homelab-key", secret="homelab-secret", ca=None, **fw_vars):
    fw = {"ansible_host": "127.0.0.1", "opnsense_vlans_api_port": emu.port,
          "opnsense_vlans_api_ca_path": str(ca or emu.ca)}
    fw.update(fw_vars)
    return {"all": {
        "vars": {"homelab_vlans": copy.deepcopy(vlans if vlans is not None else VLANS),
                 "homelab_router_port": 4000,
                 "vault_opnsense_api_key": key, "vault_opnsense_api_secret": secret},
        "children": {
            "firewall": {"hosts": {"fw": fw}},
            "gateway": {"hosts": {"gw": {"homelab_address": "10.0.20.10", "homelab_vlan": "servers"}}},
            "gpu_nodes": {"hosts": {"gpu1": {
                "homelab_address": "10.0.30.10", "homelab_vlan": "gpu",
                "engines": [{"route": "chat", "runtime": "vllm", "port": 8000},
                            {"route": "vision", "runtime": "llama_server", "port": 8081}]}}},
        },
    }}


def managed_rules(state):
    return {r["description"]: r for r in state["rules"].values() if r["description"].startswith("homelab-ai: ")}


def test_first_run_creates_then_second_run_is_unchanged(opnsense, run_playbook):
    first = run_playbook("network.yml", inventory(opnsense))
    assert first.rc == 0, first.stdout + first.stderr
    assert first.changed("fw") == 2  # the VLAN/rule task and the DHCP/DNS task (test_opnsense_network.py)
    st = opnsense.state()

    vlans = {(v["if"], v["tag"]): v for v in st["vlans"].values()}
    assert set(vlans) == {("vtnet1", "10"), ("vtnet1", "20"), ("vtnet1", "30"), ("vtnet1", "40")}
    assert sorted(v["vlanif"] for v in vlans.values()) == ["vlan01", "vlan02", "vlan03", "vlan04"]
    assert vlans[("vtnet1", "40")]["descr"] == "ai sandbox"
    # applied exactly once, and the running set is the configured set
    assert st["counters"]["vlan_reconfigure"] == 1
    assert st["running"]["vlans"] == st["vlans"]

    # 26.7+: every VLAN device assigned with the first host as static gateway address
    assigned = {i["if"]: i for i in st["interfaces"].values()}
    for v in vlans.values():
        assert assigned[v["vlanif"]]["type4"] == "staticv4"
    by_descr = {i["descr"]: i for i in st["interfaces"].values()}
    assert by_descr["sandbox"]["ipaddr"] == "10.0.40.1/24"
    assert st["counters"]["assignment_reconfigure"] == 1
    assert st["if_todo"] == {}

    rules = managed_rules(st)
    assert st["counters"]["filter_apply"] == 1
    assert st["running"]["rules"] == st["rules"]
    allow = rules["homelab-ai: allow router 10.0.20.10 to gpu1:8000"]
    block = rules["homelab-ai: block others to gpu1:8000"]
    assert (allow["action"], allow["protocol"], allow["source_net"], allow["destination_net"],
            allow["destination_port"]) == ("pass", "TCP", "10.0.20.10", "10.0.30.10", "8000")
    assert (block["action"], block["source_net"]) == ("block", "any")
    assert int(allow["sequence"]) < int(block["sequence"])  # the router's pass comes first
    assert "homelab-ai: block others to gpu1:8081" in rules
    iso = rules["homelab-ai: isolate sandbox from gpu"]
    assert (iso["action"], iso["source_net"], iso["destination_net"]) == ("block", "10.0.40.0/24", "10.0.30.0/24")
    assert "homelab-ai: isolate mgmt from sandbox" in rules
    https = rules["homelab-ai: allow sandbox to gateway 10.0.20.10:443"]
    assert (https["action"], https["destination_net"], https["destination_port"]) == ("pass", "10.0.20.10", "443")
    assert not any(r["destination_port"] == "4000" for r in rules.values())  # the router's loopback port
    assert all(r["interface"] == "" and r["quick"] == "1" for r in rules.values())  # floating, quick

    writes = st["counters"]["writes"]
    second = run_playbook("network.yml", inventory(opnsense))
    assert second.rc == 0, second.stdout + second.stderr
    assert second.changed("fw") == 0
    st2 = opnsense.state()
    assert st2["counters"]["writes"] == writes
    assert st2["counters"]["vlan_reconfigure"] == 1
    assert st2["counters"]["filter_apply"] == 1


def test_check_mode_with_diff_writes_nothing(opnsense, run_playbook):
    res = run_playbook("network.yml", inventory(opnsense), "--check", "--diff")
    assert res.rc == 0, res.stdout + res.stderr
    assert res.changed("fw") == 2
    assert "+vlans[vtnet1 tag 40]: descr=ai sandbox" in res.stdout
    assert "+rules[homelab-ai: isolate sandbox from gpu]" in res.stdout
    assert "+assignments[new:sandbox]: descr=sandbox, enable=1, if=(new device for tag 40), ipaddr=10.0.40.1/24, type4=staticv4" in res.stdout
    st = opnsense.state()
    assert st["vlans"] == {} and st["rules"] == {}
    assert st["counters"] == {"vlan_reconfigure": 0, "assignment_reconfigure": 0, "filter_apply": 0, "writes": 0,
                              "kea_reconfigure": 0, "unbound_reconfigure": 0}
    assert all(r["method"] == "GET" or "search" in r["path"].lower() for r in st["requests"])


def test_update_in_place_then_removal_only_with_flag(opnsense, run_playbook):
    assert run_playbook("network.yml", inventory(opnsense)).rc == 0

    # a changed description is an in-place update, shown by --diff, with one more reconfigure and no apply
    vlans = copy.deepcopy(VLANS)
    vlans[3]["description"] = "ai sandbox (isolated)"
    res = run_playbook("network.yml", inventory(opnsense, vlans=vlans), "--diff")
    assert res.rc == 0, res.stdout + res.stderr
    assert res.changed("fw") == 1
    assert "-vlans[vtnet1 tag 40]: descr=ai sandbox, pcp=0, vlanif=vlan04" in res.stdout
    assert "+vlans[vtnet1 tag 40]: descr=ai sandbox (isolated), pcp=0, vlanif=vlan04" in res.stdout
    st = opnsense.state()
    assert len(st["vlans"]) == 4  # same device, updated in place
    assert st["counters"]["vlan_reconfigure"] == 2 and st["counters"]["filter_apply"] == 1

    # an unlisted VLAN stays (and so do its rules) unless removal is asked for
    fewer = [v for v in vlans if v["name"] != "mgmt"]
    kept = run_playbook("network.yml", inventory(opnsense, vlans=fewer))
    assert kept.rc == 0, kept.stdout + kept.stderr
    assert kept.changed("fw") == 0
    st = opnsense.state()
    assert ("vtnet1", "10") in {(v["if"], v["tag"]) for v in st["vlans"].values()}
    assert "homelab-ai: isolate sandbox from mgmt" in managed_rules(st)

    removed = run_playbook("network.yml", inventory(opnsense, vlans=fewer, opnsense_vlans_remove_unlisted=True))
    assert removed.rc == 0, removed.stdout + removed.stderr
    assert removed.changed("fw") == 2  # and the mgmt VLAN's Kea subnet goes too
    st = opnsense.state()
    assert ("vtnet1", "10") not in {(v["if"], v["tag"]) for v in st["vlans"].values()}
    assert "mgmt" not in {i.get("descr") for i in st["interfaces"].values()}  # unassigned first
    assert "10.0.10.0/24" not in {s["subnet"] for s in st["kea"]["subnets"].values()}
    rules = managed_rules(st)
    assert "homelab-ai: isolate sandbox from mgmt" not in rules
    assert "homelab-ai: isolate sandbox from gpu" in rules
    assert st["running"]["vlans"] == st["vlans"] and st["running"]["rules"] == st["rules"]

    writes = st["counters"]["writes"]
    again = run_playbook("network.yml", inventory(opnsense, vlans=fewer, opnsense_vlans_remove_unlisted=True),
                         "--check", "--diff")
    assert again.rc == 0 and again.changed("fw") == 0, again.stdout
    assert opnsense.state()["counters"]["writes"] == writes


def test_bad_credentials_fail_clearly(opnsense, run_playbook):
    res = run_playbook("network.yml", inventory(opnsense, secret="wrong"))
    assert res.rc != 0
    assert "rejected the API key/secret (HTTP 401" in res.stdout
    assert "wrong" not in res.stdout  # the secret is never printed
    assert opnsense.state()["vlans"] == {}


def test_untrusted_certificate_fails(opnsense, pki, run_playbook):
    res = run_playbook("network.yml", inventory(opnsense, ca=pki.other_ca_cert))
    assert res.rc != 0
    assert "TLS verification of https://127.0.0.1" in res.stdout
    assert opnsense.state()["vlans"] == {}


def test_system_trust_store_does_not_trust_the_test_ca(opnsense, run_playbook):
    res = run_playbook("network.yml", inventory(opnsense, opnsense_vlans_api_ca_path=""))
    assert res.rc != 0
    assert "TLS verification" in res.stdout


def test_older_firmware_gets_a_clear_message_and_no_assignment(opnsense, run_playbook):
    opnsense.app.settings["version"] = "25.7.4"
    res = run_playbook("network.yml", inventory(opnsense))
    assert res.rc == 0, res.stdout + res.stderr
    assert "has no interface assignment API (it arrived in 26.7)" in res.stdout + res.stderr
    st = opnsense.state()
    assert len(st["vlans"]) == 4 and len(managed_rules(st)) > 0
    assert set(st["interfaces"]) == {"wan", "lan"}
    assert not any("/assignment/" in r["path"] for r in st["requests"])


def test_empty_firewall_group_is_a_noop(opnsense, run_playbook):
    inv = inventory(opnsense)
    inv["all"]["children"]["firewall"] = {"hosts": {}}
    res = run_playbook("network.yml", inv)
    assert res.rc == 0, res.stdout + res.stderr
    assert opnsense.state()["requests"] == []


@pytest.mark.parametrize("bad", [
    {"name": "x", "id": 5000, "subnet": "10.9.0.0/24", "parent_if": "vtnet1"},
    {"name": "x", "id": 50, "parent_if": "vtnet1"},
])
def test_broken_vlan_entries_are_refused_before_any_call(opnsense, run_playbook, bad):
    res = run_playbook("network.yml", inventory(opnsense, vlans=[*VLANS, bad]))
    assert res.rc != 0
    assert opnsense.state()["vlans"] == {}
