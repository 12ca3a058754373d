"""Unit contract of the open_webui role: hardened service, data directory, the 0600 environment with its one
router connection, its router key ensured by the router on the same host (homelab-router keys ensure), loopback
socket, /health, an offline install from the wheelhouse."""
import json

import pytest

testinfra_hosts = ["podman://mol-open-webui"]

UNIT = "open-webui"
KEY_FILE = "/etc/open-webui/router-key.env"
ROUTER = "/opt/homelab-router/venv/bin/homelab-router"
ROUTER_CONFIG = "/etc/homelab-router/config.yaml"


@pytest.fixture(scope="module")
def key_env(host):
    f = host.file(KEY_FILE)
    assert f.user == "root" and f.group == "root" and f.mode == 0o600
    return dict(line.split("=", 1) for line in f.content_string.splitlines() if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def key(key_env):
    assert set(key_env) == {"OPENAI_API_KEYS", "RAG_OPENAI_API_KEY"}
    assert len(set(key_env.values())) == 1
    return key_env["OPENAI_API_KEYS"]


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
    assert KEY_FILE in files, files


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
    assert "OPENAI_API_KEYS" not in env and "RAG_OPENAI_API_KEY" not in env     # in the ensured key file
    assert env["RAG_EMBEDDING_ENGINE"] == "openai" and env["RAG_OPENAI_API_BASE_URL"] == "http://127.0.0.1:4000/v1"
    assert env["ENABLE_FORWARD_USER_INFO_HEADERS"] == "True"
    assert env["AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST"] == "5"
    assert env["WEBUI_URL"] == "https://chat.molecule.test"
    assert not any(k.startswith("OLLAMA_BASE_URL") for k in env)
    assert "WEBUI_SECRET_KEY" not in env, "the session key is in its own file, made on the host"


def test_secrets_never_on_the_command_line(host, pid, key):
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string
    secret = host.file("/etc/open-webui/secret.env").content_string.strip().split("=", 1)[1]
    assert "open-webui" in cmdline and key not in cmdline and secret not in cmdline


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


def test_the_router_on_this_host_made_the_key_and_accepts_it(host, key, pid):
    """One converge: the router role installed the router, `keys ensure` made the open-webui key in its store
    (as the router's user: no root-owned SQLite files) and Open WebUI runs with it in its environment."""
    as_router = "runuser -u homelab-router --"     # the store stays the router's own
    keys = json.loads(host.check_output(f"{as_router} {ROUTER} keys list --config {ROUTER_CONFIG} --json"))
    assert [k["app"] for k in keys] == ["open-webui"] and keys[0]["rpm"] == 120, keys
    assert key.startswith(f"hlr_{keys[0]['key_id']}_")
    for f in host.check_output("ls /var/lib/homelab-router").split():
        assert host.file(f"/var/lib/homelab-router/{f}").user == "homelab-router", f
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert f"OPENAI_API_KEYS={key}" in environ.splitlines() and f"RAG_OPENAI_API_KEY={key}" in environ.splitlines()
    assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:4000/v1/models").stdout == "401"
    ok = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' -K - http://127.0.0.1:4000/v1/models <<'EOF'\n"
                  f"header = \"Authorization: Bearer {key}\"\nEOF")
    assert ok.stdout == "200", ok.stdout + ok.stderr


def test_ensure_rerun_changes_nothing_and_prints_no_secret(host, key):
    argv = (f"{ROUTER} keys ensure --config {ROUTER_CONFIG} --app open-webui --env-file {KEY_FILE} "
            "--env-name OPENAI_API_KEYS --env-name RAG_OPENAI_API_KEY")
    out = host.run(argv)
    assert out.rc == 0 and json.loads(out.stdout)["changed"] is False, out.stdout + out.stderr
    assert key not in out.stdout + out.stderr
