"""vllm role with the fake-vLLM TEST DOUBLE installed through vllm_pip_spec / vllm_pip_find_links_src."""
import json

import pytest

ENGINES = {
    "eyes": (8000, "qwen2.5-vl-7b-router-awq", "molecule-eyes-key"),
    "hands": (8001, "glm-4.5-air-awq", "molecule-hands-key"),
    "brain": (8002, "qwen3.6-35b-a3b-fp8", "molecule-brain-key"),
}
VENV = "/opt/vllm/0.11.0"


def _info(host, port):
    return json.loads(host.check_output(f"curl -sS --max-time 10 http://127.0.0.1:{port}/fake/info"))


def test_venv_and_account(host):
    assert host.file(f"{VENV}/bin/vllm").exists
    assert host.file(f"{VENV}/bin/hf").exists
    user = host.user("vllm")
    assert {"video", "render"} <= set(user.groups)
    assert host.file("/var/lib/vllm/huggingface").is_directory


@pytest.mark.parametrize("route", sorted(ENGINES))
def test_unit_running_hardened(host, route):
    svc = host.service(f"vllm-{route}")
    assert svc.is_running and svc.is_enabled, host.run(f"journalctl -u vllm-{route} -n 30 --no-pager").stdout
    props = svc.systemd_properties
    assert props["User"] == "vllm"
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    assert props["Restart"] == "on-failure"
    assert props["EnvironmentFiles"].startswith(f"/etc/vllm/{route}.env")


@pytest.mark.parametrize("route", sorted(ENGINES))
def test_env_file_holds_key_not_argv(host, route):
    port, _, key = ENGINES[route]
    env = host.file(f"/etc/vllm/{route}.env")
    assert env.mode == 0o600 and env.user == "root"
    assert f'VLLM_API_KEY="{key}"' in env.content_string
    assert 'HF_HOME="/var/lib/vllm/huggingface"' in env.content_string
    assert key not in host.check_output(f"systemctl show vllm-{route} -p ExecStart")
    assert _info(host, port)["api_key_set"] is True


def test_seed_003_flags(host):
    eyes = _info(host, 8000)["vllm_args"]
    assert eyes["quantization"] == "awq_marlin" and eyes["max_model_len"] == 32768
    assert eyes["gpu_memory_utilization"] == 0.78 and eyes["enable_prefix_caching"] is True
    assert not eyes["enforce_eager"] and eyes["revision"].startswith("0123456789")
    assert eyes["max_num_seqs"] == 8 and eyes["served_model_name"] == ["qwen2.5-vl-7b-router-awq"]
    hands = _info(host, 8001)["vllm_args"]
    assert hands["quantization"] == "compressed-tensors" and hands["kv_cache_dtype"] is None
    assert hands["max_model_len"] == 131072 and hands["gpu_memory_utilization"] == 0.92
    brain = _info(host, 8002)["vllm_args"]
    assert brain["dtype"] == "auto" and brain["kv_cache_dtype"] == "fp8"
    assert brain["enable_chunked_prefill"] is True and brain["enable_prefix_caching"] is True
    assert brain["rope_scaling"] == {"type": "yarn", "factor": 4.0}
    assert brain["tensor_parallel_size"] == 2
    assert brain["host"] == "127.0.0.1" and brain["port"] == 8002


@pytest.mark.parametrize("route", sorted(ENGINES))
def test_openai_endpoints_behind_key(host, route):
    port, served, key = ENGINES[route]
    assert host.check_output(f"curl -sS http://127.0.0.1:{port}/health") == '{"status": "ok"}'
    code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/v1/models")
    assert code == "401"
    models = json.loads(host.check_output(
        f"curl -sS -H 'Authorization: Bearer {key}' http://127.0.0.1:{port}/v1/models"))
    assert [m["id"] for m in models["data"]] == [served]


def test_predownload_at_pinned_revision(host):
    snap = ("/var/lib/vllm/huggingface/hub/models--Qwen--Qwen2.5-VL-7B-Instruct-AWQ/snapshots/"
            "0123456789abcdef0123456789abcdef01234567/config.json")
    assert host.file(snap).exists
    marker = host.file("/var/lib/vllm/.predownloaded-eyes-0123456789abcdef0123456789abcdef01234567")
    assert marker.exists and marker.user == "vllm"
    assert host.file("/var/lib/vllm/.predownloaded-hands-main").exists


@pytest.mark.parametrize("route,visible", [
    ("eyes", "0"),  # no UUID: its index in PCI bus order (01:00.0 before 0B:00.0), not its inventory position
    ("hands", "GPU-5f1c2a9e-0d3b-4c7e-9a61-2b8d4e6f7a10"),
    ("brain", "0,1"),
])
def test_engines_pinned_to_their_cards_by_identity(host, route, visible):
    port = ENGINES[route][0]
    env = _info(host, port)["env"]
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["CUDA_VISIBLE_DEVICES"] == visible
