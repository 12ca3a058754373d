"""ollama role with the fake-Ollama TEST DOUBLE archive fed through ollama_archive_url/_checksum."""
import json


def test_unpacked_release_and_link(host):
    assert host.file("/opt/ollama/0.0.0-testdouble/bin/ollama").is_file
    link = host.file("/usr/local/bin/ollama")
    assert link.is_symlink and link.linked_to == "/opt/ollama/0.0.0-testdouble/bin/ollama"


def test_service_user_in_gpu_groups(host):
    user = host.user("ollama")
    assert {"video", "render"} <= set(user.groups)
    assert user.shell == "/usr/sbin/nologin"


def test_unit_and_environment(host):
    svc = host.service("ollama")
    assert svc.is_running and svc.is_enabled, host.run("journalctl -u ollama -n 30 --no-pager").stdout
    props = svc.systemd_properties
    assert props["User"] == "ollama" and props["ProtectSystem"] == "strict"
    env = host.file("/etc/ollama/ollama.env")
    assert env.mode == 0o600
    text = env.content_string
    for line in ('OLLAMA_HOST="127.0.0.1:11434"', 'OLLAMA_KEEP_ALIVE="10m"', 'OLLAMA_MAX_LOADED_MODELS="3"',
                 'CUDA_DEVICE_ORDER="PCI_BUS_ID"', 'CUDA_VISIBLE_DEVICES="GPU-1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b"',
                 'OLLAMA_NUM_PARALLEL="4"', 'OLLAMA_MAX_QUEUE="512"', 'OLLAMA_MODELS="/var/lib/ollama/models"'):
        assert line in text, line


def test_process_sees_the_environment(host):
    info = json.loads(host.check_output("curl -sS http://127.0.0.1:11434/fake/info"))
    assert info["env"]["OLLAMA_HOST"] == "127.0.0.1:11434"
    assert info["env"]["OLLAMA_NUM_PARALLEL"] == "4"


def test_models_pulled_once(host):
    out = host.check_output("OLLAMA_HOST=127.0.0.1:11434 /usr/local/bin/ollama list")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    # pulled, aliased to its served name (ollama cp), created from the local GGUF (ollama create)
    assert sorted(names) == ["chat-llama:latest", "homelab-tiny:latest", "llama3.1:8b", "nomic-embed-text:latest",
                             "qwen2.5vl:7b"]
    # the fake records each pull time: idempotence ran a second converge, which must not have pulled again
    manifests = json.loads(host.file("/var/lib/ollama/models/testdouble-manifests.json").content_string)
    assert len(manifests) == 5
    assert host.file("/var/lib/ollama/gguf/homelab-tiny.gguf").exists


def test_openai_endpoint(host):
    body = json.dumps({"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    out = json.loads(host.check_output(
        f"curl -sS -H 'Content-Type: application/json' -d '{body}' http://127.0.0.1:11434/v1/chat/completions"))
    assert out["choices"][0]["finish_reason"] == "length"
