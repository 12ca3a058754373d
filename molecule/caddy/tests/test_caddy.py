"""Gateway layer contract: Caddy (TLS, LAN-only matcher, streaming) in front of homelab-router,
whose config was compiled from the inventory, in front of a loopback stand-in engine."""
import json
import os
import socket
import ssl

import pytest

# podman exec straight into the container: much faster than the ansible backend.
testinfra_hosts = ["podman://mol-caddy"]

SITE = "gw.molecule.test"
CA = "/usr/local/share/homelab/caddy-root-ca.crt"
CURL = f"curl -sS --cacert {CA} --resolve {SITE}:443:127.0.0.1"
CHAT = {"model": "homelab/auto", "messages": [{"role": "user", "content": "hello through caddy"}]}


@pytest.fixture(scope="module")
def journal(host):
    return host.run("journalctl -u caddy -u homelab-router --no-pager -n 80").stdout


def test_caddy_running_enabled_and_hardened(host, journal):
    svc = host.service("caddy")
    assert svc.is_running, journal
    assert svc.is_enabled
    props = svc.systemd_properties
    assert props["User"] == "caddy"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["Restart"] == "on-failure"


def test_sockets(host):
    assert host.socket("tcp://443").is_listening
    assert host.socket("tcp://80").is_listening
    assert host.socket("tcp://127.0.0.1:4000").is_listening
    assert not host.socket("tcp://0.0.0.0:4000").is_listening


def test_caddyfile(host):
    f = host.file("/etc/caddy/Caddyfile")
    assert f.contains("Ansible managed")
    assert f.contains("tls internal")
    assert f.contains("flush_interval -1")
    # a router restart is bridged by retrying the dial (POSTs only when nothing reached the router), and no active
    # health check by default: one failed probe would hold every request back after a restart
    assert f.contains("lb_try_duration 10s") and f.contains("lb_try_interval 250ms")
    assert not f.contains("health_uri")
    assert f.contains("@internal path /metrics /metrics/\\* /stats /stats/\\*")
    assert f.contains("remote_ip 127.0.0.1/32 ::1/128 192.0.2.0/24")
    assert host.run("caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile").rc == 0


def test_request_bodies_are_buffered_and_bounded(host):
    """Caddy reads a request body whole before it proxies it (a streamed one could cost a quick answer its body),
    at most caddy_request_body_max_bytes: a larger declared body gets Caddy's own OpenAI-shaped 413."""
    f = host.file("/etc/caddy/Caddyfile")
    assert f.contains("buffer_requests") and f.contains("max_size 33554432")
    out = host.run(f"{CURL} --http1.1 -o - -w '\\n%{{http_code}}' -H 'content-type: application/json' "
                   f"-H 'content-length: 40000000' --data x https://{SITE}/v1/chat/completions")
    body, _, code = out.stdout.rpartition("\n")
    assert code == "413", (out.stdout, out.stderr)
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_root_ca_published_and_fetched(host):
    ca = host.file(CA)
    assert ca.exists and ca.mode == 0o644
    assert ca.contains("BEGIN CERTIFICATE")
    fetched = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "pki", "mol-caddy-caddy-root-ca.crt")
    assert os.path.exists(fetched)
    with open(fetched) as fh:
        assert fh.read().strip() == ca.content_string.strip()


def test_router_config_compiled_from_inventory(host):
    cfg = host.file("/etc/homelab-router/config.yaml").content_string
    assert "url: http://127.0.0.1:8000/v1" in cfg
    assert "api_key_env: HOMELAB_ROUTE_CHAT_API_KEY" in cfg
    assert "model: tiny-chat" in cfg


def test_https_healthz_through_caddy(host):
    out = host.check_output(f"{CURL} https://{SITE}/healthz")
    assert json.loads(out) == {"status": "ok"}


def test_metrics_and_stats_are_not_forwarded(host):
    """App names and usage stay on the gateway: Caddy answers 404 itself (the router sees no request)."""
    for path in ("/metrics", "/stats"):
        out = host.run(f"{CURL} -o /dev/null -w '%{{http_code}}' https://{SITE}{path}")
        assert out.stdout.strip() == "404", (path, out.stdout, out.stderr)


def test_chat_completion_through_caddy_router_engine(host):
    cmd = (f"{CURL} -D - -H 'content-type: application/json' --data '{json.dumps(CHAT)}' "
           f"https://{SITE}/v1/chat/completions")
    out = host.check_output(cmd)
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/2 200") or head.startswith("HTTP/1.1 200"), out
    assert "x-homelab-route: chat" in head.lower()
    answer = json.loads(body)
    assert answer["model"] == "tiny-chat" or answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["message"]["content"]


def test_streaming_through_caddy(host):
    body = dict(CHAT, stream=True)
    out = host.check_output(
        f"{CURL} -N -H 'content-type: application/json' --data '{json.dumps(body)}' "
        f"https://{SITE}/v1/chat/completions")
    events = [line for line in out.splitlines() if line.startswith("data: ")]
    assert len(events) >= 2, out
    assert events[-1] == "data: [DONE]"


def test_outside_the_allowed_networks_gets_403(host):
    """The control node (10.88.0.1) passes the firewall (443 is allowlisted for 10.88.0.0/16) but is
    not in caddy_allowed_cidrs, so Caddy answers 403."""
    address = host.check_output("hostname -I").split()[0]
    ctx = ssl.create_default_context(cafile=os.path.join(
        os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "pki", "mol-caddy-caddy-root-ca.crt"))
    with socket.create_connection((address, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=SITE) as tls:
            tls.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 403"), data[:200]


CADDY_RULE = "caddy: http/https from the client networks"


def test_firewall_dropin_written_and_checked(host):
    dropin = host.file("/etc/nftables.d/60-caddy.nft")
    assert dropin.exists and dropin.user == "root" and dropin.mode == 0o644
    assert dropin.contains("Ansible managed")
    # the whole ruleset, with every drop-in, passes nft's check
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_firewall_accepts_http_https_from_client_networks_only(host, nft_rules, nft_nets):
    rules = [r for r in nft_rules(host) if r["comment"] == CADDY_RULE]
    assert {r["family"] for r in rules} == {"ip", "ip6"}, rules
    for rule in rules:
        assert rule["verdict"] == "accept" and rule["proto"] == "tcp"
        assert rule["dport"] == {"80", "443"}
    by_family = {r["family"]: r["saddr"] for r in rules}
    assert by_family == {"ip": nft_nets(["10.88.0.1"]), "ip6": nft_nets(["2001:db8:c1::/48"])}
    # loaded exactly once, also after a reload of the whole ruleset
    host.run_expect([0], "systemctl reload nftables")
    assert len([r for r in nft_rules(host) if r["comment"] == CADDY_RULE]) == 2


def test_firewall_open_to_a_client_closed_to_another_source(host, probe):
    """From the control node (10.88.0.1, a client network) 80 and 443 answer; from a second container on the
    same bridge (not a client network) they are dropped by the default-deny policy."""
    address = host.check_output("hostname -I").split()[0]
    assert probe(address, 443) == "open"
    assert probe(address, 80) == "open"
    assert probe(address, 443, network="podman") == "timeout"
    assert probe(address, 80, network="podman") == "timeout"
