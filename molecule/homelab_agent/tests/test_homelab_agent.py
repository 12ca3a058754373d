"""homelab_agent: files and modes, a hardened unit, and an agent that backs off while the hub is unreachable."""
import json
import time


def test_files(host):
    tok = host.file("/etc/homelab/agent.token")
    assert tok.mode == 0o600 and tok.user == "root" and len(tok.content_string.strip()) >= 40
    assert host.file("/var/lib/homelab-agent").mode == 0o700
    assert host.file("/opt/homelab-agent/homelab_agent.py").mode == 0o755
    for mod in ("figures.py", "files.py", "agent_runner.py"):      # the agent's stdlib modules, installed next to it
        assert host.file(f"/opt/homelab-agent/{mod}").mode == 0o644
    assert host.file("/opt/homelab-agent/runbooks/recover_cuda.yml").exists
    cfg = json.loads(host.file("/etc/homelab/agent.json").content_string)
    assert cfg["node"] == "mol-homelab-agent" and cfg["token_file"] == "/etc/homelab/agent.token"
    assert cfg["engines"] == [{"name": "vllm-eyes", "unit": "vllm-eyes.service", "route": "eyes",
                               "health_url": "http://127.0.0.1:8000/health"}]
    assert tok.content_string.strip() not in host.file("/etc/homelab/agent.json").content_string
    assert "/etc/homelab" in cfg["infra_paths"]           # homelab_agent_infra_paths, the role default


def test_deployed_file_rules_serve_the_config_and_refuse_the_token(host):
    """The installed files.py on Debian's python3, with the node's own allowlist: agent.json is served, the 0600
    token and /etc/shadow are refused."""
    script = ("import json, sys; sys.path.insert(0, '/opt/homelab-agent'); import files; "
              "a = json.load(open('/etc/homelab/agent.json'))['infra_paths']; "
              "print(json.dumps([files.run({'kind': 'read_file', 'args': {'path': p}}, a)['status'] for p in "
              "('/etc/homelab/agent.json', '/etc/homelab/agent.token', '/etc/shadow')]))")
    out = host.check_output(f'python3 -c "{script}"')
    assert json.loads(out) == ["succeeded", "refused", "refused"]


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
