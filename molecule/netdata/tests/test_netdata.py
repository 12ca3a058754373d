"""Netdata parent/child streaming on two real agents (Debian 12 package)."""

import json
import time
import urllib.error
import urllib.request

import pytest
import testinfra

PARENT = "mol-netdata-parent"
CHILD = "mol-netdata-child"
API_KEY = "3f6c2d4e-8a1b-4c7d-9e2f-5a6b7c8d9e01"


def _name(host):
    return host.backend.get_hostname()


def _get(host, path, retries=1, delay=2.0, want=None):
    """GET http://127.0.0.1:19999<path> inside the container; retry until `want` holds."""
    out = ""
    for _ in range(retries):
        cmd = host.run("curl -fsS --max-time 10 'http://127.0.0.1:19999%s'", path)
        out = cmd.stdout
        if cmd.rc == 0 and (want is None or want(out)):
            return out
        time.sleep(delay)
    return out


def test_package_and_service(host):
    assert host.package("netdata").is_installed
    assert host.package("netdata").version.startswith("1.")
    svc = host.service("netdata")
    assert svc.is_running
    assert svc.is_enabled


def test_api_listening_on_loopback(host):
    assert host.socket("tcp://127.0.0.1:19999").is_listening
    info = json.loads(_get(host, "/api/v1/info", retries=10))
    assert info["version"].startswith("v1.")


def test_stream_conf_protects_the_key(host):
    f = host.file("/etc/netdata/stream.conf")
    assert f.user == "root"
    assert f.group == "netdata"
    assert f.mode == 0o640
    assert API_KEY in f.content_string
    assert f.content_string.startswith("#")  # ansible_managed header


def test_netdata_conf_header_and_acl(host):
    conf = host.file("/etc/netdata/netdata.conf").content_string
    assert "Ansible managed" in conf
    assert "allow connections by dns = no" in conf
    assert "allow management from = localhost" in conf


def test_effective_config_has_no_unknown_options(host):
    """Netdata marks options it does not know as 'not used' in its effective config."""
    eff = _get(host, "/netdata.conf", retries=5)
    assert "[web]" in eff
    ours = [line.split("=")[0].strip() for line in host.file("/etc/netdata/netdata.conf").content_string.splitlines()
            if "=" in line and not line.lstrip().startswith("#")]
    unused = [o for o in ours if f"# option '{o}' is not used" in eff]
    assert unused == []


def test_parent_mirrors_the_child(host):
    if _name(host) != PARENT:
        pytest.skip("parent only")
    out = _get(host, "/api/v1/info", retries=45, delay=2,
               want=lambda s: CHILD in json.loads(s).get("mirrored_hosts", []))
    info = json.loads(out)
    assert CHILD in info["mirrored_hosts"], info.get("mirrored_hosts")
    status = {h["hostname"]: h for h in info["mirrored_hosts_status"]}
    assert status[CHILD]["reachable"] is True


def test_parent_exports_child_metrics_in_prometheus_format(host):
    if _name(host) != PARENT:
        pytest.skip("parent only")
    out = _get(host, "/api/v1/allmetrics?format=prometheus_all_hosts", retries=30, delay=2,
               want=lambda s: f'instance="{CHILD}"' in s)
    lines = [line for line in out.splitlines() if f'instance="{CHILD}"' in line and not line.startswith("#")]
    assert lines, "no sample of the child in the parent's Prometheus export"
    # Exposition format: name{labels} value [timestamp]
    name, _, rest = lines[0].partition("{")
    assert name.startswith("netdata_")
    value = rest.rsplit("}", 1)[1].split()[0]
    float(value)
    # Both nodes are in the one export, each under its own instance label.
    assert f'instance="{PARENT}"' in out


def test_parent_listens_on_its_address_and_allows_the_child(host):
    if _name(host) != CHILD:
        pytest.skip("child only")
    conf = host.file("/etc/netdata/stream.conf").content_string
    dest = next(line.split("=", 1)[1].strip() for line in conf.splitlines() if line.strip().startswith("destination"))
    url = f"http://{dest.split()[0]}/api/v1/info"
    cmd = host.run("curl -fsS --max-time 10 %s", url)
    assert cmd.rc == 0, cmd.stderr
    assert json.loads(cmd.stdout)["version"].startswith("v1.")


def test_child_streams_and_only_listens_locally(host):
    if _name(host) != CHILD:
        pytest.skip("child only")
    conf = host.file("/etc/netdata/stream.conf").content_string
    assert "enabled = yes" in conf
    assert ":19999" in conf
    listening = host.socket.get_listening_sockets()
    assert "tcp://127.0.0.1:19999" in listening
    assert not any(s.endswith(":19999") and "127.0.0.1" not in s for s in listening)


def test_gpu_collector_on_gpu_node(host):
    if _name(host) != CHILD:
        pytest.skip("the child is in gpu_nodes in this scenario")
    assert host.package("netdata-plugins-python").is_installed
    assert host.file("/usr/lib/netdata/python.d/nvidia_smi.chart.py").exists
    assert "nvidia_smi: yes" in host.file("/etc/netdata/python.d.conf").content_string


def test_gpu_collector_off_elsewhere(host):
    if _name(host) != PARENT:
        pytest.skip("parent only")
    assert "nvidia_smi: no" in host.file("/etc/netdata/python.d.conf").content_string


def test_parent_refuses_addresses_outside_the_allowlist(host):
    """The test runner (the podman host) is not in the allowlist: Netdata must not answer it."""
    if _name(host) != PARENT:
        pytest.skip("parent only")
    addr = host.check_output("hostname -I").split()[0]
    assert host.socket(f"tcp://{addr}:19999").is_listening
    try:
        with urllib.request.urlopen(f"http://{addr}:19999/api/v1/info", timeout=10) as resp:
            status = resp.status
    except (urllib.error.URLError, ConnectionError, OSError):
        status = None
    assert status != 200


def test_logs_with_the_key_are_not_world_readable(host):
    """Netdata's access.log records the API key of every stream connection."""
    d = host.file("/var/log/netdata")
    assert d.is_directory
    assert d.mode & 0o007 == 0


def test_parent_refuses_a_child_with_another_key(host):
    """Swap the child's key for another UUID: the parent must refuse it; then restore it."""
    if _name(host) != PARENT:
        pytest.skip("parent only")
    child = testinfra.get_host(f"podman://{CHILD}")
    wrong = "00000000-1111-2222-3333-444444444444"
    child.check_output("cp -p /etc/netdata/stream.conf /root/stream.conf.keep")
    try:
        child.check_output(f"sed -i 's/^\\( *api key = \\).*/\\1{wrong}/' /etc/netdata/stream.conf")
        child.check_output("systemctl restart netdata")
        denied = ""
        for _ in range(30):
            denied = host.run("grep -F %s /var/log/netdata/access.log", wrong).stdout
            if "DENIED" in denied:
                break
            time.sleep(2)
        assert "DENIED" in denied
    finally:
        child.check_output("cp -p /root/stream.conf.keep /etc/netdata/stream.conf && systemctl restart netdata")
    # With the right key back, the child is mirrored and reachable again.
    out = _get(host, "/api/v1/info", retries=45, delay=2,
               want=lambda s: any(h["hostname"] == CHILD and h["reachable"]
                                  for h in json.loads(s).get("mirrored_hosts_status", [])))
    assert any(h["hostname"] == CHILD and h["reachable"] for h in json.loads(out)["mirrored_hosts_status"])


NETDATA_RULE = "netdata: parent port from children and management"


def _address(h):
    return h.check_output("hostname -I").split()[0]


def test_parent_firewall_accepts_children_and_management_only(host, nft_rules, nft_nets):
    if _name(host) != PARENT:
        assert not host.file("/etc/nftables.d/60-netdata.nft").exists  # children only stream out
        return
    child = testinfra.get_host(f"podman://{CHILD}")
    gateway = host.check_output("ip -4 route show default").split()[2]
    rules = [r for r in nft_rules(host) if r["comment"] == NETDATA_RULE]
    assert len(rules) == 1, rules
    rule = rules[0]
    assert (rule["family"], rule["proto"], rule["dport"], rule["verdict"]) == ("ip", "tcp", {"19999"}, "accept")
    # the children (parent included: it is in group netdata too) and the management network
    assert rule["saddr"] == nft_nets([_address(host), _address(child), gateway])
    assert "policy drop" in host.check_output("nft list chain inet homelab_filter input")


def test_parent_port_open_to_management_closed_to_strangers(host, probe):
    """The child reaches 19999 (test_parent_mirrors_the_child), so does the management network (the control
    node); a third container on the same network, neither child nor management, is dropped."""
    if _name(host) != PARENT:
        pytest.skip("parent only")
    addr = _address(host)
    assert probe(addr, 19999) == "open"
    assert probe(addr, 19999, network="mol-netdata-net") == "timeout"
