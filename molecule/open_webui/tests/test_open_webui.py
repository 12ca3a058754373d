"""Unit contract of the open_webui role: hardened service, data directory, the 0600 environment with its one
router connection, loopback socket, /health, an offline install from the wheelhouse."""
import json

import pytest

testinfra_hosts = ["podman://mol-open-webui"]

KEY = "hlr_molecule0000_open-webui-molecule-key-0123456789"
UNIT = "open-webui"


@pytest.fixture(scope="module")
def journal(host):
    return host.run(f"journalctl -u {UNIT} --no-pager -n 60").stdout


@pytest.fixture(scope="module")
def env(host):
    text = host.file("/etc/open-webui/open-webui.env").content_string
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def pid(host):
    return host.check_output(f"systemctl show -p MainPID --value {UNIT}")


def test_service_running_and_enabled(host, journal):
    svc = host.service(UNIT)
    assert svc.is_running, journal
    assert svc.is_enabled


def test_runs_as_its_system_user_without_capabilities(host, pid):
    user = host.user("open-webui")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "open-webui"
    status = host.file(f"/proc/{pid}/status").content_string
    caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines()) if k.startswith("Cap")}
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapBnd"], 16) == 0, caps


def test_unit_hardening(host):
    props = host.service(UNIT).systemd_properties
    assert props["User"] == "open-webui" and props["Group"] == "open-webui"
    for name in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                 "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality"):
        assert props[name] == "yes", name
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["Restart"] == "on-failure"
    assert props["ReadWritePaths"].split() == ["/var/lib/open-webui"]
    files = host.check_output(f"systemctl show -p EnvironmentFiles {UNIT}")   # one line per file
    assert "/etc/open-webui/open-webui.env" in files and "/etc/open-webui/secret.env" in files, files


def test_data_dir_and_secret_files(host):
    data = host.file("/var/lib/open-webui")
    assert data.is_directory and data.user == "open-webui" and data.group == "open-webui" and data.mode == 0o750
    db = host.file("/var/lib/open-webui/webui.db")
    assert db.exists and db.user == "open-webui", "Open WebUI keeps its database in the data directory"
    etc = host.file("/etc/open-webui")
    assert etc.user == "root" and etc.group == "open-webui" and etc.mode == 0o750
    for path in ("/etc/open-webui/open-webui.env", "/etc/open-webui/secret.env"):
        f = host.file(path)
        assert f.user == "root" and f.group == "root" and f.mode == 0o600, path
    assert len(host.file("/etc/open-webui/secret.env").content_string.strip().split("=", 1)[1]) >= 48
    venv = host.file("/opt/open-webui/venv")
    assert venv.user == "root", "the code is not writable by the service"


def test_environment_one_router_connection_config_from_inventory(env):
    assert env["ENABLE_PERSISTENT_CONFIG"] == "False"
    assert env["ENABLE_OLLAMA_API"] == "False"
    assert env["ENABLE_OPENAI_API"] == "True"
    assert env["OPENAI_API_BASE_URLS"] == "http://127.0.0.1:4000/v1"      # one URL: no ';'-separated second one
    assert env["OPENAI_API_KEYS"] == KEY
    assert env["RAG_EMBEDDING_ENGINE"] == "openai" and env["RAG_OPENAI_API_BASE_URL"] == "http://127.0.0.1:4000/v1"
    assert env["ENABLE_FORWARD_USER_INFO_HEADERS"] == "True"
    assert env["AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST"] == "5"
    assert env["WEBUI_URL"] == "https://chat.molecule.test"
    assert not any(k.startswith("OLLAMA_BASE_URL") for k in env)
    assert "WEBUI_SECRET_KEY" not in env, "the session key is in its own file, made on the host"


def test_secrets_never_on_the_command_line(host, pid):
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string
    secret = host.file("/etc/open-webui/secret.env").content_string.strip().split("=", 1)[1]
    assert "open-webui" in cmdline and KEY not in cmdline and secret not in cmdline


def test_listens_on_loopback_only(host, pid):
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening
    # every listening socket of the service's processes is on loopback
    lines = host.check_output("ss -Hltnp").splitlines()
    mine = [line for line in lines if f"pid={pid}," in line]
    assert mine, lines
    assert all(line.split()[3].rsplit(":", 1)[0] in ("127.0.0.1", "[::1]") for line in mine), mine


def test_health_and_the_inventory_settings_in_effect(host):
    assert json.loads(host.check_output("curl -fsS --max-time 10 http://127.0.0.1:8080/health")) == {"status": True}
    cfg = json.loads(host.check_output("curl -fsS --max-time 10 http://127.0.0.1:8080/api/config"))
    assert cfg["name"].startswith("Homelab"), cfg          # WEBUI_NAME from the env file
    assert cfg["features"]["enable_signup"] is True or cfg.get("onboarding"), cfg   # no admin yet: onboarding


def test_installed_offline_from_the_wheelhouse_without_torch(host):
    assert host.file("/opt/open-webui/wheelhouse").is_directory
    pip = "/opt/open-webui/venv/bin/pip"
    assert host.check_output(f"{pip} show open-webui | sed -n 's/^Version: //p'") == "0.12.4"
    assert host.run(f"{pip} show torch").rc != 0
    assert host.run(f"{pip} show sentence-transformers").rc != 0
    # the curated set is consistent; only open-webui's own left-out extras (installed --no-deps) are missing
    problems = [line for line in host.run(f"{pip} check").stdout.splitlines() if not line.startswith("open-webui ")]
    assert problems == [], problems
