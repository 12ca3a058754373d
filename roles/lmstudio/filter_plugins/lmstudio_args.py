"""Command lines for `lms load` from inventory engine entries."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError


def engine_slots(engine):
    """The engine's parallel slots: ``max_concurrency`` (what the router admits at once), which
    ``args.max_concurrent_slots`` (LM Studio's own name, Max Concurrent Predictions) may repeat but not
    contradict. Passed to ``lms load --parallel``."""
    args = engine.get("args") or {}
    slots, lms_slots = engine.get("max_concurrency"), args.get("max_concurrent_slots")
    if slots and lms_slots and int(slots) != int(lms_slots):
        raise AnsibleFilterError(
            f"lmstudio engine {engine.get('route')!r}: args.max_concurrent_slots {lms_slots} differs from "
            f"max_concurrency {slots}; LM Studio would run another number of slots than the router admits")
    return int(slots or lms_slots or 0) or None


def lmstudio_ps_quote(value):
    """One PowerShell single-quoted literal (a quote inside is doubled; nothing is expanded)."""
    return "'" + str(value).replace("'", "''") + "'"


def lmstudio_load_argv(engine, lms_bin, parallel_flag="--parallel", gpu="max"):
    if not isinstance(engine, dict) or not engine.get("model"):
        raise AnsibleFilterError(f"lmstudio engine entry needs a model: {engine!r}")
    args = engine.get("args") or {}
    argv = [lms_bin, "load", str(engine["model"]),
            "--identifier", str(engine.get("served_name") or engine.get("route")),
            "--gpu", str(args.get("gpu", gpu)), "--yes"]
    if engine.get("context"):
        argv += ["--context-length", str(engine["context"])]
    slots = engine_slots(engine)
    if parallel_flag and slots:
        argv += [parallel_flag, str(slots)]
    if args.get("ttl"):
        argv += ["--ttl", str(args["ttl"])]
    argv += [str(x) for x in args.get("extra", [])]
    return argv


class FilterModule:
    def filters(self):
        return {"lmstudio_load_argv": lmstudio_load_argv, "lmstudio_ps_quote": lmstudio_ps_quote}
