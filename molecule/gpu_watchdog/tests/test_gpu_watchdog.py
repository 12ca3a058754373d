"""gpu_watchdog: restart a dead engine; run recover-cuda on a CUDA init failure; log JSON lines."""
import json
import time

EVENTS = "/var/log/homelab/recovery-events.jsonl"
UNIT = "vllm-wd.service"


def _events(host):
    f = host.file(EVENTS)
    return [json.loads(line) for line in f.content_string.splitlines()] if f.exists else []


def _wait_healthy(host, timeout=30):
    for _ in range(timeout):
        if host.run("curl -sf -o /dev/null http://127.0.0.1:8010/health").rc == 0:
            return True
        time.sleep(1)
    return False


def test_timer_and_config(host):
    timer = host.service("gpu-watchdog.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnUnitActiveSec=1min" in host.file("/etc/systemd/system/gpu-watchdog.timer").content_string
    cfg = json.loads(host.file("/etc/homelab/gpu-watchdog.json").content_string)
    assert cfg["targets"] == [{"unit": UNIT, "runtime": "vllm", "route": "wd",
                               "url": "http://127.0.0.1:8010/health", "grace_s": 0}]
    assert host.file("/usr/local/sbin/recover-cuda").mode == 0o755


def test_healthy_engine_is_left_alone(host):
    before = len(_events(host))
    host.check_output("systemctl start gpu-watchdog.service")
    assert len(_events(host)) == before


def test_dead_engine_is_restarted(host):
    host.check_output(f"systemctl stop {UNIT}")
    host.check_output("systemctl start gpu-watchdog.service")
    assert host.service("vllm-wd").is_running
    assert _wait_healthy(host)
    last = _events(host)[-2:]
    assert last[0]["event"] == "probe.failed" and last[0]["state"] == "inactive" and last[0]["cuda"] is None
    assert last[1]["event"] == "restart" and last[1]["unit"] == UNIT and last[1]["ok"] is True


def test_cuda_failure_runs_recover_cuda(host):
    host.check_output("mkdir -p /run/fake-engine && touch /run/fake-engine/cuda-poisoned")
    host.run("curl -s http://127.0.0.1:8010/health")  # the engine logs its CUDA error
    time.sleep(2)
    pid_before = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    host.check_output("systemctl start gpu-watchdog.service")
    kinds = [e["event"] for e in _events(host)[-6:]]
    assert kinds == ["probe.failed", "recover-cuda.begin", "recover-cuda.stop", "recover-cuda.reload",
                     "recover-cuda.start", "recover-cuda.end"], kinds
    assert _events(host)[-6]["cuda"] == "CUDA error: initialization error"
    assert _events(host)[-1]["ok"] is True
    assert not host.file("/run/fake-engine/cuda-poisoned").exists
    assert _wait_healthy(host)
    assert host.check_output(f"systemctl show -p MainPID --value {UNIT}") != pid_before


def test_recover_cuda_by_hand(host):
    out = host.check_output("/usr/local/sbin/recover-cuda operator test")
    assert '"reason": "operator test"' in out
    assert _events(host)[-1]["event"] == "recover-cuda.end"
    assert _wait_healthy(host)
