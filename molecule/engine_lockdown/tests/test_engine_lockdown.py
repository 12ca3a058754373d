"""engine_lockdown: the router's address gets an answer, any other address is refused."""
import socket

import pytest
import testinfra

NODE = "mol-gpu-lock-node"
ROUTER = "mol-gpu-lock-router"


def _addr(host):
    return host.check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")


@pytest.fixture(scope="module")
def node():
    return testinfra.get_host(f"podman://{NODE}")


@pytest.fixture(scope="module")
def router():
    return testinfra.get_host(f"podman://{ROUTER}")


def test_rules_file_and_tables(node, router, host):
    if host.backend.get_hostname() != NODE:
        pytest.skip("node-only check")
    rules = node.file("/etc/nftables.d/50-engine-lockdown.nft")
    assert rules.exists and rules.mode == 0o644
    text = rules.content_string
    assert "8081, 8082" in text and _addr(router) in text
    live = node.check_output("nft list table inet homelab_engine_lockdown")
    assert "reject with tcp reset" in live
    allow = node.check_output("nft list chain inet homelab_filter input_allow")
    assert _addr(router) in allow and "8081" in allow
    # reloading the whole ruleset (as common's handler does) does not duplicate the accept rule
    node.check_output("systemctl reload nftables")
    assert node.check_output("nft list chain inet homelab_filter input_allow").count("engines: router") == 1


@pytest.mark.parametrize("port", [8081, 8082])
def test_router_gets_an_answer(node, router, host, port):
    if host.backend.get_hostname() != ROUTER:
        pytest.skip("router-only check")
    code = router.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://{_addr(node)}:{port}/")
    assert code == "200"


@pytest.mark.parametrize("port", [8081, 8082])
def test_other_address_is_refused(node, host, port):
    if host.backend.get_hostname() != NODE:
        pytest.skip("run once")
    # from the control node (10.88.0.1 on podman's bridge): not in the allowed set
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((_addr(node), port), timeout=5).close()


def test_loopback_still_answers(node, host):
    if host.backend.get_hostname() != NODE:
        pytest.skip("node-only check")
    assert node.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/") == "200"


def test_non_engine_ports_untouched_by_lockdown(node, host):
    if host.backend.get_hostname() != NODE:
        pytest.skip("node-only check")
    live = node.check_output("nft list set inet homelab_engine_lockdown engine_ports")
    assert "22" not in live.replace("8082", "")
