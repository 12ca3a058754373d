"""The WireGuard mesh generated from the inventory: each host is a peer of the other, with the other's own key
(generated there, exported to the control node), tunnel /32, road warriors and routed LANs."""

import os
import re
from pathlib import Path

OTHER = {"mol-wgmesh-hub": "mol-wgmesh-cabin", "mol-wgmesh-cabin": "mol-wgmesh-hub"}
WANT = {
    "mol-wgmesh-hub": ("cabin.example.test:51820", "198.18.99.2/32, 192.0.2.0/24"),
    "mol-wgmesh-cabin": ("hub.example.test:51820", "198.18.99.1/32, 198.18.99.10/32"),
}


def _peers(text):
    out = {}
    for block in text.split("[Peer]")[1:]:
        name = re.search(r"^# (.*)$", block, re.M).group(1)
        out[name] = dict(re.findall(r"^(\w+) = (.*)$", block, re.M))
    return out


def test_the_other_mesh_host_is_a_peer(host):
    me = host.backend.get_hostname()
    other = OTHER[me]
    export = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "wireguard-export"
    other_key = (export / f"{other}.pub").read_text().strip()
    assert other_key != host.check_output("cat /etc/wireguard/wg0.pub").strip()
    peers = _peers(host.check_output("cat /etc/wireguard/wg0.conf"))
    mesh = peers[f"mesh: {other}"]
    endpoint, allowed = WANT[me]
    assert mesh == {"PublicKey": other_key, "AllowedIPs": allowed, "Endpoint": endpoint,
                    "PersistentKeepalive": "25"}
    # the road warrior is the hub's own peer only; the cabin reaches it through the hub
    assert ("road warrior: laptop" in peers) is (me == "mol-wgmesh-hub")


def test_config_parses(host):
    out = host.run("wg-quick strip wg0")
    assert out.rc == 0, out.stderr
    assert out.stdout.count("[Peer]") == (2 if host.backend.get_hostname() == "mol-wgmesh-hub" else 1)
