"""The example site's every layer in the lab: the network layer in the OPNsense emulator, the compute layer
in the Proxmox emulator, and each role's own firewall openings proven from other containers — open to whom
the example says, closed to everyone else."""
from __future__ import annotations

import json
import ssl
import urllib.request

import pytest

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.xdist_group("lab"), pytest.mark.timeout(1800)]

PROBE = ("import socket,sys\n"
         "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
         "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
         "except Exception as e:\n print('closed', type(e).__name__)\n")


def emulator_state(lab, kind: str) -> dict:
    port = lab["lab"].get(f"lab_{kind}_port")
    ctx = ssl.create_default_context(cafile=str(labmod.STATE / "pki" / "ca.pem"))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/__emulator__/state", context=ctx, timeout=10) as r:
        return json.loads(r.read())


def tcp(from_container: str, address: str, port: int, timeout: float = 2.0) -> bool:
    """Can `from_container` open a TCP connection to address:port? (a dropped SYN times out: closed)"""
    proc = labmod.podman_exec(from_container, "python3", "-c", PROBE, address, str(port), str(timeout),
                              check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip() == "open"


def probe(lab, name: str) -> str:
    return next(p["name"] for p in lab["lab"].vars["lab_probe_hosts"] if p["name"].endswith(name))


def test_network_layer_converged_the_example_vlans(lab):
    """site.yml's network layer ran against the OPNsense API emulator: the example's five VLANs (ids,
    parents, descriptions) exist, their interfaces are assigned, and the isolation rules are applied."""
    state = emulator_state(lab, "opnsense")
    inv = lab["lab"]
    want = {(v["parent_if"], str(v["id"])) for v in inv.hostvars[inv.gateway]["homelab_vlans"]}
    have = {(v["if"], str(v["tag"])) for v in state["vlans"].values()}
    assert want <= have, (want, have)
    assert state["running"]["rules"], "no firewall rule was applied"
    descriptions = " ".join(r.get("description", "") for r in state["running"]["rules"].values())
    assert "homelab-ai" in descriptions, descriptions
    # DHCP/DNS for every host (issue 12): the gateway's name resolves through Unbound, applied
    gw_vars = inv.hostvars[inv.gateway]
    records = {(h["hostname"], h["domain"]): h["server"] for h in state["running"]["unbound"]["hosts"].values()}
    assert records.get((inv.gateway, gw_vars.get("homelab_domain", "lan"))) == gw_vars["homelab_address"], records
    assert "homelab-ai: baseline pass sandbox" in descriptions, descriptions


def test_compute_layer_created_the_example_guests(lab):
    """The compute layer created the example's LXC guests (vmid, hostname) in the Proxmox API emulator and
    started them; their lab containers answered SSH, so the later layers ran on them."""
    state = emulator_state(lab, "proxmox")
    inv = lab["lab"]
    want = {str(inv.hostvars[h]["lxc"]["vmid"]): h for h in inv.groups["lxc_guests"]}
    guests = state["guests"]
    assert set(want) <= set(guests), (want, list(guests))
    for vmid, host in want.items():
        assert guests[vmid]["status"] == "running", guests[vmid]
        assert guests[vmid]["config"].get("hostname") == host, guests[vmid]["config"]


def test_gateway_https_is_open_to_clients_and_closed_to_strangers(lab):
    inv = lab["lab"]
    gw = inv.address(inv.gateway)
    assert tcp(probe(lab, "lan"), gw, 443), "a LAN client cannot reach Caddy on the gateway"
    assert not tcp(probe(lab, "stranger"), gw, 443), "a host outside the example's networks reaches Caddy"


def test_ssh_only_from_management(lab):
    inv = lab["lab"]
    for host in (inv.gateway, sorted(inv.groups["gpu_nodes"])[0]):
        assert labmod.run(["ssh", "-i", str(labmod.SSH_KEY), "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                           f"root@{inv.address(host)}", "true"], check=False).returncode == 0, host
        assert not tcp(probe(lab, "lan"), inv.address(host), 22), f"SSH on {host} is open to the LAN"
        assert not tcp(probe(lab, "stranger"), inv.address(host), 22), f"SSH on {host} is open to strangers"


def test_netdata_parent_open_to_children_only(lab):
    inv = lab["lab"]
    parent = sorted(inv.groups["netdata_parent"])[0]
    child = sorted(inv.groups["netdata"] - {parent})[0]
    assert tcp(inv.container(child), inv.address(parent), 19999), f"child {child} cannot stream to the parent"
    assert not tcp(probe(lab, "lan"), inv.address(parent), 19999), "the Netdata parent is open to the LAN"
    assert not tcp(probe(lab, "stranger"), inv.address(parent), 19999)


def test_engine_ports_only_from_the_router(lab):
    inv = lab["lab"]
    for host in sorted(inv.groups["gpu_nodes"]):
        for engine in inv.hostvars[host].get("engines", []):
            assert tcp(inv.container(inv.gateway), inv.address(host), engine["port"]), (host, engine["route"])
            assert not tcp(probe(lab, "lan"), inv.address(host), engine["port"]), (host, engine["route"])
            assert not tcp(inv.container("hub"), inv.address(host), engine["port"]), (host, engine["route"])


def test_wireguard_port_is_in_the_gateways_ruleset(lab):
    """UDP gives no answer to probe, so the gateway's loaded nftables ruleset is read instead."""
    inv = lab["lab"]
    wg = sorted(inv.groups["wireguard"])[0]
    ruleset = labmod.podman_exec(inv.container(wg), "nft", "list", "ruleset").stdout
    port = inv.hostvars[wg].get("wireguard_listen_port", 51820)
    assert f"udp dport {port}" in ruleset, ruleset
