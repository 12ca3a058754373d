"""lmstudio (Linux headless) with the fake-lms TEST DOUBLE bundle."""
import json
import time

LMS = "/var/lib/lmstudio/.lmstudio/bin/lms"


def _models(host):
    return json.loads(host.check_output("curl -sS --max-time 10 http://127.0.0.1:1234/v1/models"))


def test_bundle_and_account(host):
    assert host.file("/opt/lmstudio/0.0.0-testdouble/bin/lms").is_file
    assert host.file("/var/lib/lmstudio/.lmstudio/bin").is_symlink
    assert {"video", "render"} <= set(host.user("lmstudio").groups)


def test_unit_loads_each_entry_with_its_slots(host):
    svc = host.service("lmstudio")
    assert svc.is_running and svc.is_enabled, host.run("journalctl -u lmstudio -n 30 --no-pager").stdout
    unit = host.file("/etc/systemd/system/lmstudio.service").content_string
    assert f"ExecStartPre={LMS} daemon up" in unit
    assert (f"ExecStartPre={LMS} load google/gemma-4-31b --identifier gemma-4-31b --gpu max --yes "
            "--context-length 32768 --parallel 3") in unit
    assert "--identifier gemma-3-4b" in unit and "--parallel 1" in unit
    assert f"ExecStart={LMS} server start --port 1234 --bind 127.0.0.1" in unit
    assert f"ExecStop={LMS} daemon down" in unit
    assert svc.systemd_properties["ProtectSystem"] == "strict"


def test_api_serves_loaded_models(host):
    assert sorted(m["id"] for m in _models(host)["data"]) == ["gemma-3-4b", "gemma-4-31b"]
    loaded = json.loads(host.check_output(f"sudo -u lmstudio HOME=/var/lib/lmstudio {LMS} ps --json"))
    slots = {m["identifier"]: m["parallel"] for m in loaded}
    assert slots == {"gemma-4-31b": 3, "gemma-3-4b": 1}


def test_health_timer_restarts_a_dead_server(host):
    timer = host.service("lmstudio-health.timer")
    assert timer.is_enabled and timer.is_running
    # kill llmster behind systemd's back: the oneshot unit stays "active", only HTTP notices
    host.run(f"sudo -u lmstudio HOME=/var/lib/lmstudio {LMS} daemon down")
    for _ in range(20):
        if host.run("curl -s -o /dev/null http://127.0.0.1:1234/v1/models").rc != 0:
            break
        time.sleep(0.5)
    host.check_output("systemctl start lmstudio-health.service")
    for _ in range(30):
        if host.run("curl -sf -o /dev/null http://127.0.0.1:1234/v1/models").rc == 0:
            break
        time.sleep(1)
    assert len(_models(host)["data"]) == 2
    assert "restarting lmstudio.service" in host.check_output("journalctl -u lmstudio-health -n 20 --no-pager")
