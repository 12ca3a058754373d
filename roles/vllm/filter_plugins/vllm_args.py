"""Build the `vllm serve` command line from an inventory engine entry."""
from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

# Engine-entry keys that map onto vLLM flags directly.
_ENTRY_FLAGS = {
    "served_name": "--served-model-name",
    "context": "--max-model-len",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_concurrency": "--max-num-seqs",
}
# args keys the role consumes itself instead of passing through.
_RESERVED_ARGS = {"extra", "host", "port", "served_model_name", "api_key"}


def _value(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def vllm_argv(engine, vllm_bin, listen_address, negatable=()):
    """Return the argv list for one engine entry.

    engine.args is a free dict: each key becomes --key-with-dashes. True -> bare flag,
    False -> omitted (or --no-flag for keys in `negatable`), dict/list -> compact JSON,
    anything else -> its string form. args.extra is a list appended verbatim.
    """
    if not isinstance(engine, dict) or not engine.get("model") or not engine.get("port"):
        raise AnsibleFilterError(f"vllm engine entry needs model and port: {engine!r}")
    argv = [vllm_bin, "serve", str(engine["model"]),
            "--host", str(listen_address), "--port", str(engine["port"])]
    for key, flag in _ENTRY_FLAGS.items():
        if engine.get(key) not in (None, ""):
            argv += [flag, _value(engine[key])]
    args = engine.get("args") or {}
    if not isinstance(args, dict):
        raise AnsibleFilterError(f"engine {engine.get('route')}: args must be a mapping")
    for key in sorted(args):
        if key in _RESERVED_ARGS:
            if key != "extra":  # validation and the preflight refuse these (vllm_flags.ROLE_SET); never drop silently
                raise AnsibleFilterError(f"engine {engine.get('route')}: args.{key} is set by the role, not in args")
            continue
        value = args[key]
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            elif key in negatable:
                argv.append("--no-" + key.replace("_", "-"))
            continue
        argv += [flag, _value(value)]
    cards = engine.get("gpus") or []
    if len(cards) > 1 and "tensor_parallel_size" not in args and "pipeline_parallel_size" not in args:
        # tensor parallelism across exactly the cards the engine names (CUDA_VISIBLE_DEVICES shows only those)
        argv += ["--tensor-parallel-size", str(len(cards))]
    argv += [str(x) for x in args.get("extra", [])]
    return argv


class FilterModule:
    def filters(self):
        return {"vllm_argv": vllm_argv}
