"""Unit contract of the common role: packages, time sync, sshd hardening, nftables default-deny."""
import socket

import pytest

# podman exec straight into the containers: much faster than the ansible backend (one ansible run per command).
testinfra_hosts = ["podman://mol-common", "podman://mol-common-nonft"]


def _nft_host(host):
    return host.backend.get_hostname() == "mol-common"


def test_base_packages(host):
    for pkg in ("ca-certificates", "curl", "jq", "python3-venv", "sudo", "nftables", "openssh-server"):
        assert host.package(pkg).is_installed, pkg


def test_timesyncd_enabled_with_container_note(host):
    assert host.package("systemd-timesyncd").is_installed
    assert host.service("systemd-timesyncd").is_enabled
    assert host.file("/etc/systemd/timesyncd.conf.d/50-homelab.conf").mode == 0o644


def test_sshd_running_and_hardened(host):
    svc = host.service("ssh")
    assert svc.is_running and svc.is_enabled
    assert host.socket("tcp://0.0.0.0:22").is_listening
    dropin = host.file("/etc/ssh/sshd_config.d/00-homelab.conf")
    assert dropin.exists and dropin.user == "root" and dropin.mode == 0o644
    assert dropin.contains("Ansible managed")
    effective = host.check_output("sshd -T")
    lines = set(effective.splitlines())
    assert "passwordauthentication no" in lines
    assert "kbdinteractiveauthentication no" in lines
    assert "permitemptypasswords no" in lines
    assert "permitrootlogin without-password" in lines  # sshd -T spelling of prohibit-password
    assert "allowgroups root" in lines and "allowgroups sudo" in lines
    assert host.run("sshd -t").rc == 0


def test_nftables_ruleset_file(host):
    conf = host.file("/etc/nftables.conf")
    assert conf.exists and conf.mode == 0o644
    assert conf.contains('include "/etc/nftables.d/\\*.nft"')
    assert host.file("/etc/nftables.d").is_directory


def test_nftables_loaded_where_supported(host):
    if not _nft_host(host):
        pytest.skip("unprivileged container: checked in test_nftables_skipped_without_kernel_support")
    svc = host.service("nftables")
    assert svc.is_enabled
    assert svc.systemd_properties["ActiveState"] == "active"
    ruleset = host.check_output("nft list table inet homelab_filter")
    assert "policy drop;" in ruleset
    assert 'iif "lo" accept' in ruleset
    assert "ct state established,related accept" in ruleset
    assert "ip saddr 10.88.0.1 tcp dport 22 accept" in ruleset
    assert "tcp dport 8443 accept" in ruleset
    assert "udp dport 9000-9001 accept" in ruleset
    assert "ip6 saddr 2001:db8::/32 udp dport 9000-9001 accept" in ruleset
    # the drop-in written before the role ran is included, in the input_allow chain, exactly once
    allow = host.check_output("nft list chain inet homelab_filter input_allow")
    assert allow.count("tcp dport 8444 accept") == 1
    # a reload replaces the table instead of stacking rules
    host.run_expect([0], "systemctl reload nftables")
    again = host.check_output("nft list table inet homelab_filter")
    assert again.count("tcp dport 8444 accept") == 1 and again.count("tcp dport 22 accept") == 1


def test_ssh_accept_rule_parsed(host, nft_rules, nft_nets):
    """The loaded input chain, parsed from `nft -j`: SSH is accepted from the management network only."""
    if not _nft_host(host):
        pytest.skip("no firewall in the unprivileged container")
    ssh = [r for r in nft_rules(host, chain="input") if r["comment"] == "ssh from management"]
    assert len(ssh) == 1, ssh
    assert (ssh[0]["family"], ssh[0]["saddr"], ssh[0]["proto"], ssh[0]["dport"], ssh[0]["verdict"]) == (
        "ip", nft_nets(["10.88.0.1"]), "tcp", {"22"}, "accept")


def test_ssh_closed_to_a_source_outside_management(host, probe):
    """A second container on the same bridge (10.88.0.0/16 but not 10.88.0.1) is dropped on SSH, while the
    allowlisted 8443 (from 10.88.0.0/16) answers it: the drop is the source check, not the path."""
    if not _nft_host(host):
        pytest.skip("no firewall in the unprivileged container")
    address = host.check_output("hostname -I").split()[0]
    host.run("systemd-run --unit=mol-listen-8443b python3 -m http.server 8443 --bind 0.0.0.0")
    try:
        host.run_expect([0], "for i in $(seq 50); do ss -ltn | grep -q ':8443 ' && exit 0; sleep 0.1; done; exit 1")
        assert probe(address, 22) == "open"
        assert probe(address, 22, network="podman") == "timeout"
        assert probe(address, 8443, network="podman") == "open"
    finally:
        host.run("systemctl stop mol-listen-8443b")


def test_nftables_skipped_without_kernel_support(host):
    if _nft_host(host):
        pytest.skip("privileged container: the firewall is loaded")
    assert host.run("nft list tables").rc != 0
    assert not host.service("nftables").is_enabled
    assert host.file("/etc/nftables.conf").contains("policy drop")


def _connect(address, port, timeout=3.0):
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error:{exc}"


def test_default_deny_with_real_packets(host):
    """From the control node (10.88.0.1, inside the management CIDR): SSH and allowlisted ports
    answer, a listening port that is not allowlisted is silently dropped."""
    if not _nft_host(host):
        pytest.skip("no firewall in the unprivileged container")
    address = host.check_output("hostname -I").split()[0]
    for port in (8443, 8444, 8081):
        host.run(f"systemd-run --unit=mol-listen-{port} python3 -m http.server {port} --bind 0.0.0.0")
    try:
        host.run_expect([0], "for i in $(seq 50); do ss -ltn | grep -q ':8081 ' && exit 0; sleep 0.1; done; exit 1")
        assert host.socket("tcp://0.0.0.0:8081").is_listening
        # inside the container (loopback) the port is reachable
        assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/").stdout == "200"
        assert _connect(address, 22) == "open"
        assert _connect(address, 8443) == "open"   # common_nftables_allow
        assert _connect(address, 8444) == "open"   # drop-in file
        assert _connect(address, 8081) == "timeout"  # default deny: dropped, not refused
    finally:
        for port in (8443, 8444, 8081):
            host.run(f"systemctl stop mol-listen-{port}")
