"""Command lines for `lms load` from inventory engine entries."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError


def lmstudio_load_argv(engine, lms_bin, parallel_flag="--parallel", gpu="max"):
    if not isinstance(engine, dict) or not engine.get("model"):
        raise AnsibleFilterError(f"lmstudio engine entry needs a model: {engine!r}")
    args = engine.get("args") or {}
    argv = [lms_bin, "load", str(engine["model"]),
            "--identifier", str(engine.get("served_name") or engine.get("route")),
            "--gpu", str(args.get("gpu", gpu)), "--yes"]
    if engine.get("context"):
        argv += ["--context-length", str(engine["context"])]
    if parallel_flag and engine.get("max_concurrency"):
        argv += [parallel_flag, str(engine["max_concurrency"])]
    if args.get("ttl"):
        argv += ["--ttl", str(args["ttl"])]
    argv += [str(x) for x in args.get("extra", [])]
    return argv


class FilterModule:
    def filters(self):
        return {"lmstudio_load_argv": lmstudio_load_argv}
