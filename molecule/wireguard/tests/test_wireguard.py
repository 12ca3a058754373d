"""WireGuard remote access without a kernel module: config, keys, unit enablement."""

import base64
import os
from pathlib import Path

import pytest

PEERS = {
    "laptop": ("4GdmBE3DOdyb3grrxylvTAFLKUTuTtNQ0pa3bOM2JDs=", "198.18.99.10/32"),
    "phone": ("RzpA8EKXWXmjCaSlzfqWJ1jAHUDhP0N6YB/xwnuoskM=", "198.18.99.11/32"),
}


def _export_dir():
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "wireguard-export"


def test_tools_installed(host):
    assert host.package("wireguard-tools").is_installed
    assert host.exists("wg")
    assert host.exists("wg-quick")


def test_directory_is_private(host):
    d = host.file("/etc/wireguard")
    assert d.is_directory
    assert d.user == "root"
    assert d.mode == 0o700


def test_private_key_generated_on_host(host):
    f = host.file("/etc/wireguard/wg0.key")
    assert f.user == "root"
    assert f.group == "root"
    assert f.mode == 0o600
    key = host.check_output("cat /etc/wireguard/wg0.key").strip()
    assert len(base64.b64decode(key, validate=True)) == 32


def test_public_key_matches_private_key(host):
    derived = host.check_output("wg pubkey < /etc/wireguard/wg0.key").strip()
    pub = host.file("/etc/wireguard/wg0.pub")
    assert pub.mode == 0o644
    assert pub.content_string.strip() == derived


def test_config_rendered_without_secret(host):
    f = host.file("/etc/wireguard/wg0.conf")
    assert f.user == "root"
    assert f.mode == 0o600
    conf = f.content_string
    assert "Ansible managed" in conf
    assert "Address = 198.18.99.1/24" in conf
    assert "ListenPort = 51820" in conf
    assert "PostUp = wg set %i private-key /etc/wireguard/wg0.key" in conf
    assert "PrivateKey" not in conf
    key = host.check_output("cat /etc/wireguard/wg0.key").strip()
    assert key not in conf
    for name, (pub, ips) in PEERS.items():
        assert f"# road warrior: {name}" in conf
        assert f"PublicKey = {pub}" in conf
        assert f"AllowedIPs = {ips}" in conf
    assert "PersistentKeepalive = 25" in conf


def test_config_parses_with_wg_quick(host):
    stripped = host.run("wg-quick strip wg0")
    assert stripped.rc == 0, stripped.stderr
    assert stripped.stdout.count("[Peer]") == len(PEERS)


def test_unit_enabled_but_not_started_without_kernel_module(host):
    svc = host.service("wg-quick@wg0")
    assert svc.is_enabled
    has_module = host.file("/sys/module/wireguard").exists
    if not has_module:
        assert not svc.is_running


def test_ip_forwarding(host):
    assert host.file("/etc/sysctl.d/90-wireguard.conf").contains("net.ipv4.ip_forward")
    assert host.sysctl("net.ipv4.ip_forward") == 1


def test_public_key_and_client_templates_on_control_node(host):
    exported = (_export_dir() / "mol-wireguard.pub").read_text().strip()
    assert exported == host.file("/etc/wireguard/wg0.pub").content_string.strip()
    private = host.check_output("cat /etc/wireguard/wg0.key").strip()
    for name, (_pub, ips) in PEERS.items():
        client = _export_dir() / f"mol-wireguard-{name}.conf"
        text = client.read_text()
        assert oct(client.stat().st_mode & 0o777) == "0o600"
        assert f"PublicKey = {exported}" in text
        assert f"Address = {ips}" in text
        assert "Endpoint = vpn.example.test:51820" in text
        assert "AllowedIPs = 198.18.99.0/24, 192.0.2.0/24" in text
        assert private not in text


WG_RULE = "wireguard: listen port"


def test_firewall_dropin_checked_and_loaded_once(host, nft_rules, nft_nets):
    dropin = host.file("/etc/nftables.d/60-wireguard.nft")
    assert dropin.exists and dropin.mode == 0o644 and dropin.contains("Ansible managed")
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0
    rules = {r["family"]: r for r in nft_rules(host) if r["comment"] == WG_RULE}
    assert set(rules) == {"ip", "ip6"}, rules
    assert rules["ip"]["saddr"] == nft_nets(["10.88.0.1"])
    assert rules["ip6"]["saddr"] == nft_nets(["2001:db8:77::/48"])
    for rule in rules.values():
        assert (rule["proto"], rule["dport"], rule["verdict"]) == ("udp", {"51820"}, "accept")
    host.run_expect([0], "systemctl reload nftables")
    assert len([r for r in nft_rules(host) if r["comment"] == WG_RULE]) == 2


def test_listen_port_open_to_allowed_source_only(host, probe):
    """No kernel module here, so nothing listens on 51820/udp: a UDP echo stands in for WireGuard. The control
    node (allowed) gets its datagram echoed; a second container on the bridge is dropped (no answer)."""
    if host.socket("udp://51820").is_listening:
        pytest.skip("wg-quick listens on 51820 (kernel module present): no stand-in possible")
    echo = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 51820))\n"
            "while True:\n d, a = s.recvfrom(64); s.sendto(d, a)")
    host.run_expect([0], "systemd-run --unit=mol-udp-echo python3 -c %s", echo)
    try:
        host.run_expect([0], "for i in $(seq 50); do ss -lun | grep -q ':51820 ' && exit 0; sleep 0.1; done; exit 1")
        address = host.check_output("hostname -I").split()[0]
        assert probe(address, 51820, proto="udp") == "open"
        assert probe(address, 51820, proto="udp", network="podman") == "timeout"
    finally:
        host.run("systemctl stop mol-udp-echo")
