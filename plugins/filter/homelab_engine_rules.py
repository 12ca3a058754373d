"""homelab-ai: the engine roles' rules (vllm, llama_server, ollama, lmstudio), part of the shared role rules
(homelab_rules.py collects them in RULES; validation and every preflight run the same code)."""
from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _load_sibling(name: str):
    """A module next to this file (Ansible loads filter files without a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_values = _load_sibling("homelab_values")
homelab_gpus = _load_sibling("homelab_gpus")
vllm_flags = _load_sibling("vllm_flags")
_int, _port, _text, _list, _bool, _required = (_values._int, _values._port, _values._text, _values._list,
                                               _values._bool, _values._required)
_num, ROUTE_NAME_RE, ROUTE_NAME_HELP = _values._num, _values.ROUTE_NAME_RE, _values.ROUTE_NAME_HELP
Problem = tuple[str, str]


# ------------------------------------------------------------------------------------------------
# engine lists (vllm_engines, llama_server_engines, ollama_engines, lmstudio_engines)

def _engine_list(v: Mapping[str, Any], key: str, one_port: bool) -> list[Problem]:
    engines = v.get(key)
    if not _list(engines):
        return [(key, f"must be a list of engine entries, got {type(engines).__name__}")]
    out: list[Problem] = []
    ports: dict[int, int] = {}
    routes: dict[str, int] = {}
    for i, e in enumerate(engines):
        f = f"{key}[{i}]"
        if not isinstance(e, Mapping):
            out.append((f, "must be a mapping"))
            continue
        route = e.get("route")
        if not (_text(route) and ROUTE_NAME_RE.match(route)):
            out.append((f"{f}.route", f"{route!r} is not a valid route name ({ROUTE_NAME_HELP})"))
        elif route in routes:
            out.append((f"{f}.route", f"route {route!r} is also {key}[{routes[route]}]"))
        else:
            routes[route] = i
        if not _text(e.get("model")):
            out.append((f"{f}.model", "is required (the model this engine serves)"))
        port = e.get("port")
        if not one_port and not _port(port):
            out.append((f"{f}.port", f"must be a port 1-65535, got {port!r}"))
        elif not one_port and _int(port) in ports:
            out.append((f"{f}.port", f"port {port} is also {key}[{ports[_int(port)]}]'s port on this host"))
        elif not one_port:
            ports[_int(port)] = i
        util = e.get("gpu_memory_utilization")
        if util is not None and not (_num(util) is not None and 0 < _num(util) <= 1):
            out.append((f"{f}.gpu_memory_utilization", f"must be a fraction in (0, 1], got {util!r}"))
        args = e.get("args")
        if args is not None and not isinstance(args, Mapping):
            out.append((f"{f}.args", "must be a mapping of flag: value"))
        elif isinstance(args, Mapping) and key != "vllm_engines":  # vLLM: the flag table says it (rules_vllm)
            out += [(f"{f}.args.{k}", f"engine {route!r}: {LISTEN_ARGS[k]}") for k in sorted(args) if k in LISTEN_ARGS]
        if v.get(key.replace("_engines", "_gpus")) is not None:
            _, problem = homelab_gpus.engine_cards(e, v.get(key.replace("_engines", "_gpus")))
            if problem:
                out.append((f"{f}.gpus", f"engine {route!r}: {problem}"))
    return out


# Listen settings never belong in an engine's args: the role sets them from these fields.
LISTEN_ARGS = {
    "host": "listen settings are not engine args: the role binds the host's homelab_address (<role>_listen_address)",
    "port": "listen settings are not engine args: set engines[].port",
    "bind": "listen settings are not engine args: the role binds the host's homelab_address (<role>_listen_address)",
}


def _one_server_port(v: Mapping[str, Any], key: str, port_key: str, runtime: str) -> list[Problem]:
    engines = [e for e in (v.get(key) or []) if isinstance(e, Mapping)]
    ports = {_int(e.get("port", v.get(port_key))) for e in engines}
    if len(ports) > 1:
        return [(key, f"{runtime} runs one server per host: every entry must use the same port, got {sorted(map(str, ports))}")]
    if engines and not _port(next(iter(ports))):
        return [(f"{key}[0].port", f"must be a port 1-65535, got {engines[0].get('port')!r}")]
    return []


def rules_vllm(v: Mapping[str, Any]) -> list[Problem]:
    """Engine list, plus every args flag/value checked against the pinned version's table (vllm_flags.py)."""
    out = _engine_list(v, "vllm_engines", one_port=False)
    version = v.get("vllm_version")
    for i, e in enumerate(v.get("vllm_engines") or [] if _list(v.get("vllm_engines")) else []):
        if not isinstance(e, Mapping):
            continue
        for key, reason in vllm_flags.flag_problems(e.get("args"), str(version)):
            field = f"vllm_engines[{i}].args.{key}" if key else "vllm_version"
            out.append((field, f"engine {e.get('route')!r}: {reason}"))
            if not key:
                break
        if v.get("vllm_gpus") is not None:
            idx, problem = homelab_gpus.engine_cards(e, v.get("vllm_gpus"))
            tp = None if problem else homelab_gpus.parallel_problem(e, len(idx))
            if tp:
                out.append((f"vllm_engines[{i}].args.tensor_parallel_size", f"engine {e.get('route')!r}: {tp}"))
    return out


def rules_llama_server(v: Mapping[str, Any]) -> list[Problem]:
    out = _engine_list(v, "llama_server_engines", one_port=False)
    method, source = v.get("llama_server_install_method"), v.get("llama_server_source_type")
    if method not in ("source", "binary"):
        out.append(("llama_server_install_method", f"must be source or binary, got {method!r}"))
    if source not in ("git", "sdist"):
        out.append(("llama_server_source_type", f"must be git or sdist, got {source!r}"))
    if v.get("llama_server_cuda") not in ("auto", "on", "off"):
        out.append(("llama_server_cuda", f"must be auto, on or off, got {v.get('llama_server_cuda')!r}"))
    if method == "binary":
        out += _required(v, "llama_server_binary_src", "the binary install method copies this file")
    if method == "source" and source == "sdist":
        out += _required(v, "llama_server_sdist_checksum", "an sdist source is verified against it")
    if not _bool(v.get("llama_server_allow_vision_without_mmproj", False)):
        for i, e in enumerate(v.get("llama_server_engines") or []):
            if isinstance(e, Mapping) and _bool(e.get("vision", False)) \
                    and "mmproj" not in (e.get("args") if isinstance(e.get("args"), Mapping) else {}):
                out.append((f"llama_server_engines[{i}].args.mmproj",
                            "is required on a vision engine (the projector GGUF); or set "
                            "llama_server_allow_vision_without_mmproj: true"))
    return out


def rules_ollama(v: Mapping[str, Any]) -> list[Problem]:
    out = [p for p in _engine_list(v, "ollama_engines", one_port=True)]
    out += _one_server_port(v, "ollama_engines", "ollama_port", "Ollama")
    out += _required(v, "ollama_archive_checksum", "the downloaded archive is verified against it")
    if not is_duration(v.get("ollama_keep_alive")):
        out.append(("ollama_keep_alive", f"must be a duration such as 5m, 1h, -1 (forever) or 0, got "
                                         f"{v.get('ollama_keep_alive')!r}"))
    for key in ("ollama_max_loaded_models", "ollama_num_parallel", "ollama_max_queue"):
        if key in v and (_int(v[key]) is None or _int(v[key]) < (0 if key == "ollama_max_queue" else 1)):
            out.append((key, f"must be an integer >= {0 if key == 'ollama_max_queue' else 1}, got {v[key]!r}"))
    names: dict[str, int] = {}
    for i, e in enumerate(v.get("ollama_engines") or [] if _list(v.get("ollama_engines")) else []):
        if not isinstance(e, Mapping):
            continue
        f = f"ollama_engines[{i}]"
        if e.get("keep_alive") is not None and not is_duration(e.get("keep_alive")):
            out.append((f"{f}.keep_alive", f"engine {e.get('route')!r}: must be a duration such as 5m, 1h, -1 or 0, "
                                           f"got {e.get('keep_alive')!r}"))
        name = str(e.get("served_name") or e.get("model") or "")
        if name in names:
            out.append((f"{f}.served_name", f"engine {e.get('route')!r}: the Ollama model name {name!r} is also "
                                            f"ollama_engines[{names[name]}]'s; one server tells models apart by name"))
        names.setdefault(name, i)
        gguf = (e.get("args") or {}).get("gguf_src") if isinstance(e.get("args"), Mapping) else None
        if gguf is not None and not (isinstance(gguf, str) and gguf.endswith(".gguf")):
            out.append((f"{f}.args.gguf_src", f"engine {e.get('route')!r}: must be the path of a local .gguf file"))
        if gguf is not None and not _text(e.get("served_name")):
            out.append((f"{f}.served_name", f"engine {e.get('route')!r}: a model created from a local GGUF needs "
                                            "served_name (the name `ollama create` gives it)"))
    return out


def is_duration(v: Any) -> bool:
    """An Ollama keep_alive: seconds (integer) or a Go duration such as 5m, 1h30m, -1, 0."""
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, str) and re.fullmatch(r"-?\d+|-?(\d+(\.\d+)?(ns|us|ms|s|m|h))+", v.strip()) is not None


def rules_lmstudio(v: Mapping[str, Any]) -> list[Problem]:
    out = _engine_list(v, "lmstudio_engines", one_port=True)
    out += _one_server_port(v, "lmstudio_engines", "lmstudio_port", "LM Studio")
    for i, e in enumerate(v.get("lmstudio_engines") or []):
        args = e.get("args") if isinstance(e, Mapping) else None
        slots = args.get("max_concurrent_slots") if isinstance(args, Mapping) else None
        if slots is None:
            continue
        if _int(slots) is None or _int(slots) < 1:
            out.append((f"lmstudio_engines[{i}].args.max_concurrent_slots", f"must be a whole number >= 1, got {slots!r}"))
        elif e.get("max_concurrency") is not None and _int(e.get("max_concurrency")) != _int(slots):
            out.append((f"lmstudio_engines[{i}].args.max_concurrent_slots",
                        f"{slots} differs from max_concurrency {e.get('max_concurrency')}: LM Studio would run "
                        "another number of slots (lms load --parallel) than the router admits"))
    if not _bool(v.get("windows", False)) and v.get("lmstudio_engines"):
        why = ("a Linux LM Studio install downloads a pinned, checksummed lms/llmster bundle "
               "(LM Studio only publishes an install script, which the role does not pipe into a shell)")
        out += _required(v, "lmstudio_archive_url", why) + _required(v, "lmstudio_archive_checksum", why)
    return out


class FilterModule:
    """No filters of its own: the rules are reached through homelab_rules.py's homelab_role_errors."""

    def filters(self) -> dict[str, Any]:
        return {}
