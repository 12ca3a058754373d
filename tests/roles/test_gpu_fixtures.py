"""The GPU scenarios' fixtures: the tiny GGUF generator and the fake-engine TEST DOUBLE."""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "doubles" / "fake_engine.py"


def _gen(tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "make_tiny_gguf.py"), "--out", str(out), *args],
                   check=True, capture_output=True)
    return out


def test_tiny_gguf_is_deterministic_and_chatml(tmp_path):
    gguf = pytest.importorskip("gguf")
    a, b = _gen(tmp_path, "a.gguf"), _gen(tmp_path, "b.gguf")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    reader = gguf.GGUFReader(str(a))
    fields = reader.fields
    arch = fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    tmpl = fields["tokenizer.chat_template"]
    assert "<|im_start|>" in bytes(tmpl.parts[tmpl.data[0]]).decode()
    assert len(reader.tensors) == 2 + 2 * 9 + 1
    e = _gen(tmp_path, "e.gguf", "--pooling", "mean")
    assert "llama.pooling_type" in gguf.GGUFReader(str(e)).fields


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fake_vllm_rejects_unknown_flags():
    p = subprocess.run([sys.executable, str(FAKE), "--as", "vllm", "serve", "m", "--no-such-flag"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "unrecognized arguments" in p.stderr


def test_fake_vllm_serves_openai_shapes(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE), "--as", "vllm", "serve", "org/m", "--served-model-name", "m",
                             "--host", "127.0.0.1", "--port", str(port), "--api-key", "k"],
                            stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(base + "/v1/embeddings", data=json.dumps({"input": ["a", "b"]}).encode(),
                                     headers={"Authorization": "Bearer k"})
        out = json.load(urllib.request.urlopen(req, timeout=5))
        assert [d["index"] for d in out["data"]] == [0, 1]
        req = urllib.request.Request(base + "/v1/chat/completions",
                                     data=json.dumps({"messages": [], "stream": True, "max_tokens": 2}).encode(),
                                     headers={"Authorization": "Bearer k"})
        body = urllib.request.urlopen(req, timeout=5).read().decode()
        assert body.rstrip().endswith("data: [DONE]")
    finally:
        proc.terminate()
        proc.wait(5)
