"""The vLLM TEST DOUBLE refuses what the pinned real `vllm serve` refuses, using the same flag table as validation
(plugins/filter/vllm_flags.py), and accepts every command line the vllm role builds for the example inventory."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOUBLE = REPO / "tests" / "doubles" / "fake_engine.py"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fake = _load("fake_engine_under_test", DOUBLE)
vllm_args = _load("vllm_args_under_test", REPO / "roles" / "vllm" / "filter_plugins" / "vllm_args.py")


def _serve(*argv: str) -> subprocess.CompletedProcess:
    # --help-free refusal paths exit before binding a port
    return subprocess.run([sys.executable, str(DOUBLE), "--as", "vllm", "serve", "m", *argv],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("argv,rc,message", [
    (["--kv-cache-dtype", "turboquant_k8v4"], 2, "invalid choice: 'turboquant_k8v4'"),
    (["--enable-turbo"], 2, "unrecognized arguments: --enable-turbo"),
    (["--enforce-eager", "false"], 2, "unrecognized arguments: false"),
    (["--max-model-len", "32k"], 2, "invalid int value"),
    (["--rope-scaling", "{yarn}"], 2, "invalid loads value"),
    (["--speculative-config", '{"method":"none"}'], 1, "speculative_config.method"),
])
def test_double_refuses_what_the_pinned_vllm_refuses(argv, rc, message):
    run = _serve(*argv)
    assert run.returncode == rc and message in run.stderr, run.stderr


@pytest.mark.parametrize("host", ["ubuntu-4090", "ubuntu-6000", "spark"])
def test_double_accepts_the_example_launches(host):
    engines = yaml.safe_load((REPO / "inventory" / "example" / "host_vars" / f"{host}.yml").read_text())["engines"]
    parser, _ = fake.vllm_parser("0.11.0")
    for e in engines:
        argv = vllm_args.vllm_argv(e, "vllm", "10.0.0.1", ["enable_prefix_caching", "enable_chunked_prefill"])
        ns = parser.parse_args(argv[2:])  # SystemExit here = the real CLI would refuse the unit's ExecStart
        assert ns.model == e["model"] and ns.port == e["port"]


def test_role_passes_tensor_parallel_size_for_the_cards_named():
    e = {"route": "big", "model": "m", "port": 8000, "gpus": ["GPU-a", "GPU-b"], "args": {}}
    argv = vllm_args.vllm_argv(e, "vllm", "10.0.0.1")
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    ns = fake.vllm_parser("0.11.0")[0].parse_args(argv[2:])
    assert ns.tensor_parallel_size == 2


def test_role_never_drops_a_listen_flag_silently():
    with pytest.raises(Exception, match="args.host is set by the role"):
        vllm_args.vllm_argv({"route": "x", "model": "m", "port": 8000, "args": {"host": "127.0.0.1"}}, "vllm", "a")


def test_json_flags_roundtrip():
    argv = vllm_args.vllm_argv({"route": "x", "model": "m", "port": 8000,
                                "args": {"rope_scaling": {"type": "yarn", "factor": 4.0}}}, "vllm", "a")
    ns = fake.vllm_parser("0.11.0")[0].parse_args(argv[2:])
    assert ns.rope_scaling == json.loads(argv[argv.index("--rope-scaling") + 1])
