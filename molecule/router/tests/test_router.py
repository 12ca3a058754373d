"""Unit contract of the router role: hardened service, loopback socket, health, files, answers."""
import json

import pytest

# podman exec straight into the container: much faster than the ansible backend.
testinfra_hosts = ["podman://mol-router"]

ADMIN_KEY = "molecule-admin-key-0123456789"


@pytest.fixture(scope="module")
def journal(host):
    return host.run("journalctl -u homelab-router --no-pager -n 80").stdout


def test_service_running_and_enabled(host, journal):
    svc = host.service("homelab-router")
    assert svc.is_running, journal
    assert svc.is_enabled


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:4000").is_listening
    assert not host.socket("tcp://0.0.0.0:4000").is_listening


def test_runs_as_system_user(host):
    user = host.user("homelab-router")
    assert user.exists and user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000
    pid = host.check_output("systemctl show -p MainPID --value homelab-router")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "homelab-router"


def test_unit_hardening(host):
    props = host.service("homelab-router").systemd_properties
    assert props["User"] == "homelab-router"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["Restart"] == "on-failure"
    assert "/var/lib/homelab-router" in props["ReadWritePaths"]
    assert "/var/log/homelab-router" in props["ReadWritePaths"]
    assert props["EnvironmentFiles"].startswith("/etc/homelab-router/router.env")
    # empty capability set: the running process holds no capabilities at all
    pid = host.check_output("systemctl show -p MainPID --value homelab-router")
    status = host.file(f"/proc/{pid}/status").content_string
    caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines()) if k.startswith("Cap")}
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapBnd"], 16) == 0, caps


def test_files_and_modes(host):
    env = host.file("/etc/homelab-router/router.env")
    assert env.user == "root" and env.group == "root" and env.mode == 0o600
    assert env.contains("HOMELAB_ROUTER_ADMIN_KEY=")
    assert env.contains("HOMELAB_ROUTE_CHAT_API_KEY=")
    cfg = host.file("/etc/homelab-router/config.yaml")
    assert cfg.user == "root" and cfg.group == "homelab-router" and cfg.mode == 0o640
    assert cfg.contains("Ansible managed")
    assert host.file("/etc/homelab-router").mode == 0o750
    assert host.run("/opt/homelab-router/venv/bin/homelab-router check-config /etc/homelab-router/config.yaml").rc == 0
    # the secrets never reach the config file or the unit
    assert not cfg.contains(ADMIN_KEY)
    assert not host.file("/etc/systemd/system/homelab-router.service").contains(ADMIN_KEY)


def test_healthz(host):
    out = host.check_output("curl -fsS http://127.0.0.1:4000/healthz")
    assert json.loads(out) == {"status": "ok"}


def test_models_and_chat_through_the_router(host):
    models = json.loads(host.check_output("curl -fsS http://127.0.0.1:4000/v1/models"))
    ids = [m["id"] for m in models["data"]]
    assert "homelab/chat" in ids and "tiny-chat" in ids
    body = json.dumps({"model": "homelab/auto", "messages": [{"role": "user", "content": "hello there"}]})
    out = host.run(
        "curl -sS -D /tmp/h -o /tmp/b -w '%{http_code}' -H 'content-type: application/json' "
        f"--data '{body}' http://127.0.0.1:4000/v1/chat/completions && cat /tmp/h && cat /tmp/b")
    assert out.rc == 0, out.stderr
    assert out.stdout.startswith("200"), out.stdout
    assert "x-homelab-route: chat" in out.stdout.lower()
    answer = json.loads(host.check_output("cat /tmp/b"))
    assert answer["choices"][0]["message"]["content"]


def test_upstream_key_reaches_the_engine(host):
    # the fake engine was started with VLLM_API_KEY: a 200 above already proves the router sent the key
    # from its EnvironmentFile; ask the engine directly without one to be sure it does check.
    code = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' "
        "--data '{\"model\":\"tiny-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}' "
        "http://127.0.0.1:8000/v1/chat/completions")
    assert code == "401"


def test_admin_needs_the_key(host):
    assert host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:4000/admin/reload-config "
        "-H 'Authorization: Bearer wrong'") in ("401", "403")
    assert host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:4000/admin/reload-config "
        f"-H 'Authorization: Bearer {ADMIN_KEY}'") == "200"


def test_mcp_bridge_hardened_on_loopback(host):
    svc = host.service("homelab-router-mcp")
    assert svc.is_running, host.run("journalctl -u homelab-router-mcp --no-pager -n 60").stdout
    assert svc.is_enabled
    assert host.socket("tcp://127.0.0.1:8092").is_listening
    assert not host.socket("tcp://0.0.0.0:8092").is_listening
    props = svc.systemd_properties
    assert props["User"] == "homelab-router" and props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict" and props["PrivateDevices"] == "yes"
    pid = host.check_output("systemctl show -p MainPID --value homelab-router-mcp")
    status = host.file(f"/proc/{pid}/status").content_string
    caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines()) if k.startswith("Cap")}
    assert int(caps["CapEff"], 16) == 0, caps


def test_mcp_bridge_needs_a_key(host):
    assert json.loads(host.check_output("curl -fsS http://127.0.0.1:8092/healthz")) == {"status": "ok"}
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8092/mcp "
                             "-H 'content-type: application/json' --data '{}'") == "401"
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8092/sse "
                             "-H 'Authorization: Bearer hlr_x_y'") == "401"
    cfg = host.file("/etc/homelab-router/config.yaml").content_string
    assert "mcp:" in cfg and "port: 8092" in cfg
