"""Shared by every scenario's testinfra tests: run the checks through `podman exec` instead of one
ansible call per command.

Molecule hands testinfra ansible:// hosts; each command through that backend costs an
ansible-playbook start. The containers are local podman containers with the same names,
so the podman backend reaches the very same hosts, much faster.

Also shared: `nft_rules` (the common role's allow chain parsed from `nft -j`) and `probe` (connect to a port from
the control node or from a throw-away container, i.e. from a second source address).
"""

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest
import testinfra


@pytest.fixture(scope="module")
def host(_testinfra_host):
    if shutil.which("podman") is None:
        return _testinfra_host
    return testinfra.get_host(f"podman://{_testinfra_host.backend.get_hostname()}")


# --- host firewall helpers (the common role's nftables ruleset and the roles' drop-ins) ---------------------
PROBE_IMAGE = os.environ.get("HOMELAB_IMAGE", "localhost/homelab-debian12:latest")

_PROBE = """
import socket, sys
proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, kind)
s.settimeout(3)
try:
    s.connect((addr, port))
    if proto == "udp":
        s.send(b"probe")
        s.recv(64)
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error:%s" % exc)
"""


def _nft_values(right):
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    out = set()
    for item in items:
        if isinstance(item, dict) and "prefix" in item:
            out.add(f"{item['prefix']['addr']}/{item['prefix']['len']}")
        elif isinstance(item, dict) and "range" in item:
            out.add(f"{item['range'][0]}-{item['range'][1]}")
        else:
            out.add(str(item))
    return out


def canonical_nets(values):
    """Addresses, CIDRs and "a-b" ranges -> the set of collapsed networks they cover, as strings, so that
    nft's own merging of adjacent set elements (10.0.0.1, 10.0.0.2 -> 10.0.0.1-10.0.0.2) compares equal."""
    nets = []
    for value in values:
        if "-" in value:
            first, last = (ipaddress.ip_address(part) for part in value.split("-", 1))
            nets.extend(ipaddress.summarize_address_range(first, last))
        else:
            nets.append(ipaddress.ip_network(value, strict=False))
    out = set()
    for version in (4, 6):
        out.update(str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == version))
    return out


def nft_accept_rules(host, chain="input_allow"):
    """The rules of `inet homelab_filter <chain>`, parsed from `nft -j`: one dict per rule with
    family (ip, ip6 or None for both), saddr (canonical_nets() set, or None for any), proto, dport (set),
    comment, verdict."""
    data = json.loads(host.check_output(f"nft -j list chain inet homelab_filter {chain}"))
    rules = []
    for item in data["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        parsed = {"family": None, "saddr": None, "proto": None, "dport": set(),
                  "comment": rule.get("comment"), "verdict": None}
        for expr in rule["expr"]:
            if "match" in expr:
                left, right = expr["match"]["left"], expr["match"]["right"]
                payload = left.get("payload") if isinstance(left, dict) else None
                if payload and payload.get("field") == "saddr":
                    parsed["family"], parsed["saddr"] = payload["protocol"], canonical_nets(_nft_values(right))
                elif payload and payload.get("field") == "dport":
                    parsed["proto"], parsed["dport"] = payload["protocol"], _nft_values(right)
                elif isinstance(left, dict) and left.get("meta", {}).get("key") == "nfproto":
                    parsed["family"] = {"ipv4": "ip", "ipv6": "ip6"}.get(right, right)
            elif "accept" in expr:
                parsed["verdict"] = "accept"
        rules.append(parsed)
    return rules


def probe_from_container(network, address, port, proto="tcp", ip=None):
    """Connect to address:port from a throw-away container on podman network `network` (another source
    address than the control node). Returns open, refused, timeout or error:...; UDP is open on an answer."""
    cmd = ["podman", "run", "--rm", "--network", network]
    if ip:
        cmd += ["--ip", ip]
    cmd += [PROBE_IMAGE, "python3", "-c", _PROBE, proto, address, str(port)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def probe_from_here(address, port, proto="tcp"):
    """The same probe from the control node (the podman network's gateway address)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, proto, address, str(port)],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def nft_rules():
    """nft_rules(host[, chain]) -> the parsed rules of the common role's allow chain."""
    return nft_accept_rules


@pytest.fixture(scope="session")
def nft_nets():
    """nft_nets([...addresses/CIDRs]) -> the same canonical form as a parsed rule's saddr."""
    return canonical_nets


@pytest.fixture(scope="session")
def probe():
    """probe(address, port, proto="tcp", network=None, ip=None): from the control node when network is None,
    else from a throw-away container on that podman network."""
    def _probe(address, port, proto="tcp", network=None, ip=None):
        if network is None:
            return probe_from_here(address, port, proto)
        return probe_from_container(network, address, port, proto, ip)
    return _probe
