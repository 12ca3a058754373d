"""llama_server in router mode: the real llama-server with --models-dir/--models-max, loading on request."""
import json

UNIT = "llama-server-tiny-router"
BASE = "http://127.0.0.1:8090"


def _curl(host, *args):
    return host.check_output("curl -sS --max-time 30 " + " ".join(args))


def _states(host):
    return {m["id"]: m["status"]["value"] for m in json.loads(_curl(host, BASE + "/models"))["data"]}


def test_unit_running_hardened_with_router_flags(host):
    svc = host.service(UNIT)
    assert svc.is_running and svc.is_enabled, host.run(f"journalctl -u {UNIT} -n 30 --no-pager").stdout
    props = svc.systemd_properties
    assert props["User"] == "llama" and props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    unit = host.file(f"/etc/systemd/system/{UNIT}.service").content_string
    for flag in ("--models-dir /var/lib/llama-server/models/tiny-router", "--models-max 2", "--no-models-autoload",
                 "--sleep-idle-seconds 600", "--port 8090", "--parallel 2", "-c 512"):
        assert flag in unit, flag
    assert " -m " not in unit and "--alias" not in unit


def test_models_dir_and_catalog(host):
    d = host.file("/var/lib/llama-server/models/tiny-router")
    assert d.is_directory and d.mode == 0o750 and d.group == "llama"
    assert _states(host) == {"tiny-alpha": "unloaded", "tiny-beta": "unloaded", "tiny-gamma": "unloaded"}


def test_load_on_request_and_the_resident_limit(host):
    for name in ("tiny-alpha", "tiny-beta"):
        assert json.loads(_curl(host, "-X POST", BASE + "/models/load", "-d", f"'{{\"model\":\"{name}\"}}'"))["success"]
    host.run("for i in $(seq 50); do curl -s " + BASE + "/models | grep -q loading || break; sleep 0.2; done")
    out = json.loads(_curl(host, BASE + "/v1/chat/completions", "-H 'Content-Type: application/json'", "-d",
                           "'{\"model\":\"tiny-beta\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"))
    assert out["choices"][0]["message"]["content"] is not None
    states = _states(host)
    assert states["tiny-alpha"] == "loaded" and states["tiny-beta"] == "loaded" and states["tiny-gamma"] == "unloaded"
