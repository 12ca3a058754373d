"""WireGuard remote access without a kernel module: config, keys, unit enablement."""

import base64
import os
from pathlib import Path

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
        assert f"# {name}" in conf
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
