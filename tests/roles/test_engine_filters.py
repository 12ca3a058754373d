"""Unit tests for the GPU-node roles' filter plugins (command lines and watchdog targets)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _load(role: str, name: str):
    spec = importlib.util.spec_from_file_location(f"{role}_{name}", ROLES / role / "filter_plugins" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vllm = _load("vllm", "vllm_args")
llama = _load("llama_server", "llama_server_args")
lms = _load("lmstudio", "lmstudio_args")
wd = _load("gpu_watchdog", "gpu_watchdog")


def test_vllm_seed_003_launch_flags():
    spark = {"route": "brain", "model": "Qwen/Qwen3.6-35B-A3B-FP8", "served_name": "qwen3.6-35b-a3b-fp8",
             "context": 131072, "port": 8002,
             "args": {"dtype": "auto", "kv_cache_dtype": "fp8", "enable_chunked_prefill": True,
                      "enable_prefix_caching": True, "rope_scaling": {"type": "yarn", "factor": 4.0}}}
    argv = vllm.vllm_argv(spark, "/opt/vllm/bin/vllm", "10.0.0.5", ["enable_prefix_caching"])
    assert argv[:7] == ["/opt/vllm/bin/vllm", "serve", "Qwen/Qwen3.6-35B-A3B-FP8", "--host", "10.0.0.5",
                        "--port", "8002"]
    joined = " ".join(argv)
    for part in ("--served-model-name qwen3.6-35b-a3b-fp8", "--max-model-len 131072", "--dtype auto",
                 "--kv-cache-dtype fp8", "--enable-chunked-prefill", "--enable-prefix-caching"):
        assert part in joined
    assert json.loads(argv[argv.index("--rope-scaling") + 1]) == {"factor": 4.0, "type": "yarn"}


def test_vllm_booleans_and_extra():
    e = {"route": "x", "model": "m", "port": 1, "gpu_memory_utilization": 0.78,
         "args": {"enforce_eager": False, "enable_prefix_caching": False, "speculative_config": {"method": "none"},
                  "quantization": "awq_marlin", "extra": ["--foo", 3]}}
    argv = vllm.vllm_argv(e, "vllm", "127.0.0.1", ["enable_prefix_caching"])
    assert "--enforce-eager" not in argv and "--no-enforce-eager" not in argv
    assert "--no-enable-prefix-caching" in argv
    assert argv[argv.index("--speculative-config") + 1] == '{"method":"none"}'
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.78"
    assert argv[-2:] == ["--foo", "3"]


def test_vllm_rejects_incomplete_entry():
    with pytest.raises(Exception):
        vllm.vllm_argv({"route": "x", "port": 1}, "vllm", "h")


def test_llama_server_chat_vision_and_embeddings():
    chat = {"route": "eyes", "model": "qwen-vl.gguf", "served_name": "qwen-vl", "port": 8081, "context": 4096,
            "max_concurrency": 3, "vision": True, "args": {"mmproj": "mmproj-qwen.gguf"}}
    argv = llama.llama_server_argv(chat, "/usr/local/bin/llama-server", "10.0.0.7", "/models", "/etc/k.keys")
    s = " ".join(argv)
    for part in ("-m /models/qwen-vl.gguf", "--alias qwen-vl", "--host 10.0.0.7", "--port 8081", "-ngl 999",
                 "--parallel 3", "--metrics", "-c 4096", "--api-key-file /etc/k.keys", "--mmproj /models/mmproj-qwen.gguf"):
        assert part in s
    assert "--embeddings" not in s
    emb = {"route": "emb", "model": "/srv/e.gguf", "port": 8082, "embeddings": True, "args": {"ngl": 0}}
    s = " ".join(llama.llama_server_argv(emb, "ls", "127.0.0.1", "/models"))
    assert "-m /srv/e.gguf" in s and "--embeddings --pooling mean" in s and "-ngl 0" in s
    assert "--api-key-file" not in s and "--alias emb" in s


def test_lms_load_slots_from_max_concurrency():
    e = {"route": "mouth", "model": "google/gemma-4-31b", "served_name": "gemma-4-31b", "context": 32768,
         "max_concurrency": 3}
    assert lms.lmstudio_load_argv(e, "lms") == [
        "lms", "load", "google/gemma-4-31b", "--identifier", "gemma-4-31b", "--gpu", "max", "--yes",
        "--context-length", "32768", "--parallel", "3"]
    assert "--parallel" not in lms.lmstudio_load_argv(e, "lms", parallel_flag="")


def test_watchdog_targets_one_unit_per_server():
    engines = [
        {"route": "a", "runtime": "vllm", "port": 8000},
        {"route": "b", "runtime": "llama_server", "port": 8081},
        {"route": "c", "runtime": "ollama", "port": 11434},
        {"route": "d", "runtime": "ollama", "port": 11434},
        {"route": "e", "runtime": "lmstudio", "port": 1234},
    ]
    targets = wd.gpu_watchdog_targets(engines, "10.0.0.9", {"vllm": 900})
    assert [t["unit"] for t in targets] == ["vllm-a.service", "llama-server-b.service", "ollama.service",
                                            "lmstudio.service"]
    assert targets[0]["url"] == "http://10.0.0.9:8000/health" and targets[0]["grace_s"] == 900
    assert targets[2]["url"] == "http://10.0.0.9:11434/api/version"
    assert wd.gpu_watchdog_targets([], "x") == []


def _example_engines():
    import yaml

    hv = Path(__file__).resolve().parents[2] / "inventory" / "example" / "host_vars"
    out = {}
    for f in sorted(hv.glob("*.yml")):
        data = yaml.safe_load(f.read_text()) or {}
        if data.get("engines"):
            out[f.stem] = (data.get("homelab_address", "127.0.0.1"), data["engines"])
    return out


def test_example_inventory_engines_render():
    """Every engine entry of the example inventory turns into a command line (and a watchdog target)."""
    hosts = _example_engines()
    if not hosts:
        pytest.skip("example inventory has no engine entries")
    runtimes = set()
    for addr, engines in hosts.values():
        for e in engines:
            runtimes.add(e["runtime"])
            if e["runtime"] == "vllm":
                argv = vllm.vllm_argv(e, "vllm", addr, ["enable_prefix_caching", "enable_chunked_prefill"])
                assert argv[2] == e["model"] and argv[argv.index("--port") + 1] == str(e["port"])
            elif e["runtime"] == "llama_server":
                assert "--port" in llama.llama_server_argv(e, "llama-server", addr, "/m")
            elif e["runtime"] == "lmstudio":
                assert lms.lmstudio_load_argv(e, "lms")[2] == e["model"]
        assert len(wd.gpu_watchdog_targets(engines, addr)) >= 1
    assert "vllm" in runtimes


def test_llama_server_router_mode_from_the_inventory():
    """Issue 14: args.models_max switches an engine to router mode (its own models dir, no -m/--alias); entries
    without it render exactly as before."""
    eng = {"route": "small", "model": "tiny-alpha.gguf", "served_name": "tiny-alpha", "port": 8090, "context": 512,
           "max_concurrency": 2, "args": {"models_max": 2, "sleep_idle_seconds": 300}}
    assert llama.llama_server_router_mode(eng) and not llama.llama_server_router_mode({"args": {}})
    s = " ".join(llama.llama_server_argv(eng, "ls", "127.0.0.1", "/models"))
    for part in ("--models-dir /models/small", "--models-max 2", "--no-models-autoload", "--sleep-idle-seconds 300",
                 "--port 8090", "--parallel 2", "-c 512"):
        assert part in s
    assert " -m " not in s and "--alias" not in s
    assert llama.llama_server_model_file(eng, "/models") == "/models/small/tiny-alpha.gguf"
    eng["args"] = {"models_max": 0, "models_autoload": True}
    assert "--no-models-autoload" not in " ".join(llama.llama_server_argv(eng, "ls", "127.0.0.1", "/models"))
    with pytest.raises(Exception, match="models_max must be an integer"):
        llama.llama_server_argv({**eng, "args": {"models_max": "two"}}, "ls", "127.0.0.1", "/models")
    plain = {"route": "x", "model": "m.gguf", "port": 1}
    assert llama.llama_server_model_file(plain, "/models") == "/models/m.gguf"
