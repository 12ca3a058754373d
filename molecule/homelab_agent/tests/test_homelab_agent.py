"""homelab_agent: files and modes, a hardened unit, and an agent that backs off while the hub is unreachable."""
import json
import time


def test_files(host):
    tok = host.file("/etc/homelab/agent.token")
    assert tok.mode == 0o600 and tok.user == "root" and len(tok.content_string.strip()) >= 40
    assert host.file("/var/lib/homelab-agent").mode == 0o700
    assert host.file("/opt/homelab-agent/homelab_agent.py").mode == 0o755
    assert host.file("/opt/homelab-agent/agent_runner.py").mode == 0o644     # imported by the agent, beside it
    assert host.file("/opt/homelab-agent/runbooks/recover_cuda.yml").exists
    cfg = json.loads(host.file("/etc/homelab/agent.json").content_string)
    assert cfg["node"] == "mol-homelab-agent" and cfg["token_file"] == "/etc/homelab/agent.token"
    assert cfg["engines"] == [{"name": "vllm-eyes", "unit": "vllm-eyes.service", "route": "eyes",
                               "health_url": "http://127.0.0.1:8000/health"}]
    assert tok.content_string.strip() not in host.file("/etc/homelab/agent.json").content_string


def test_hardened_unit(host):
    svc = host.service("homelab-agent.service")
    assert svc.is_enabled and svc.is_running
    props = host.check_output("systemctl show homelab-agent.service -p NoNewPrivileges -p ProtectSystem "
                              "-p ProtectHome -p PrivateTmp -p RestrictAddressFamilies")
    for want in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert want in props
    assert host.run("ss -Hltnp | grep -q python").rc != 0      # it listens on nothing


def test_backs_off_while_the_hub_is_down(host):
    for _ in range(20):
        log = host.check_output("journalctl -u homelab-agent.service --no-pager -o cat")
        if log.count("hub unreachable") >= 2:
            break
        time.sleep(1)
    assert "retrying in" in log
    assert host.service("homelab-agent.service").is_running
