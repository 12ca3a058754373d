"""llama_server: real llama.cpp server units, answering real requests from tiny generated models."""
import json

CHAT = "llama-server-tiny-chat"
EMBED = "llama-server-tiny-embed"
KEY = "molecule-chat-key"


def _curl(host, *args):
    return host.check_output("curl -sS --max-time 20 " + " ".join(args))


def test_units_running_and_hardened(host):
    for unit in (CHAT, EMBED):
        svc = host.service(unit)
        assert svc.is_running and svc.is_enabled, host.run(f"journalctl -u {unit} -n 30 --no-pager").stdout
        props = svc.systemd_properties
        assert props["User"] == "llama"
        assert props["NoNewPrivileges"] == "yes"
        assert props["ProtectSystem"] == "strict"
        assert props["PrivateTmp"] == "yes"
        assert props["Restart"] == "on-failure"


def test_command_line_flags(host):
    chat = host.file(f"/etc/systemd/system/{CHAT}.service").content_string
    for flag in ("--api-key-file /etc/llama-server/tiny-chat.keys", "--metrics", "-c 2048", "-ngl 999",
                 "--parallel 2", "--alias tiny-chat", "--port 8081", "--host 127.0.0.1"):
        assert flag in chat, flag
    assert "--embeddings" not in chat and "--mmproj" not in chat
    embed = host.file(f"/etc/systemd/system/{EMBED}.service").content_string
    assert "--embeddings --pooling mean" in embed and "-ngl 0" in embed
    assert "--api-key-file" not in embed


def test_key_and_env_files_are_private(host):
    keys = host.file("/etc/llama-server/tiny-chat.keys")
    assert keys.mode == 0o600 and keys.user == "llama"
    assert keys.content_string.strip() == KEY
    assert host.file("/etc/llama-server/tiny-chat.env").mode == 0o600
    assert KEY not in host.check_output(f"systemctl show {CHAT} -p ExecStart")


def test_health_and_auth(host):
    assert json.loads(_curl(host, "http://127.0.0.1:8081/health"))["status"] == "ok"
    code = _curl(host, "-o /dev/null -w '%{http_code}'", "http://127.0.0.1:8081/v1/models")
    assert code == "401"


def test_real_chat_completion(host):
    body = json.dumps({"model": "tiny-chat", "temperature": 0, "max_tokens": 8,
                       "messages": [{"role": "user", "content": "say something"}]})
    out = json.loads(_curl(host, f"-H 'Authorization: Bearer {KEY}' -H 'Content-Type: application/json'",
                           f"-d '{body}'", "http://127.0.0.1:8081/v1/chat/completions"))
    choice = out["choices"][0]
    assert out["model"] == "tiny-chat"
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"].split()) >= 4  # whole words from the tiny vocabulary
    assert out["usage"]["completion_tokens"] == 8


def test_streaming_chat(host):
    body = json.dumps({"model": "tiny-chat", "stream": True, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "hi"}]})
    out = _curl(host, "-N", f"-H 'Authorization: Bearer {KEY}'", f"-d '{body}'",
                "http://127.0.0.1:8081/v1/chat/completions")
    lines = [ln for ln in out.splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


def test_embeddings(host):
    out = json.loads(_curl(host, "-H 'Content-Type: application/json'", "-d '{\"input\": \"hello world\"}'",
                           "http://127.0.0.1:8082/v1/embeddings"))
    vec = out["data"][0]["embedding"]
    assert len(vec) == 64
    assert abs(sum(v * v for v in vec) - 1.0) < 1e-3  # llama-server normalises


def test_metrics_endpoint(host):
    out = _curl(host, f"-H 'Authorization: Bearer {KEY}'", "http://127.0.0.1:8081/metrics")
    assert "llamacpp:" in out


def test_restart_only_on_change(host):
    """A converge without changes must not have restarted the units (idempotence ran before verify)."""
    for unit in (CHAT, EMBED):
        n = host.check_output(f"systemctl show {unit} -p NRestarts --value")
        assert n == "0"
