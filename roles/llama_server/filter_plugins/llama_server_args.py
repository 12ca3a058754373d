"""Build the llama-server command line from an inventory engine entry."""
from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError


def _model_path(name, models_dir):
    name = str(name)
    return name if name.startswith("/") else posixpath.join(models_dir, posixpath.basename(name))


def llama_server_router_mode(engine):
    """Router mode (issue 14): the engine entry sets args.models_max. One llama-server then serves every GGUF in its
    own models directory (<models_dir>/<route>), loading and unloading them on demand (--models-dir, --models-max,
    --sleep-idle-seconds); the homelab router drives the loads (autoload off unless args.models_autoload)."""
    return isinstance(engine, dict) and (engine.get("args") or {}).get("models_max") is not None


def llama_server_engine_models_dir(engine, models_dir):
    """Where an engine's GGUF files live: the shared directory, or <models_dir>/<route> in router mode."""
    if llama_server_router_mode(engine):
        return posixpath.join(models_dir, str(engine.get("route")))
    return models_dir


def llama_server_model_file(engine, models_dir):
    return _model_path(engine.get("model", ""), llama_server_engine_models_dir(engine, models_dir))


def llama_server_argv(engine, binary, listen_address, models_dir, key_file=None,
                      default_ngl="999", default_pooling="mean", threads=0):
    """argv for one engine: -m, --alias, --host, --port, -c, -ngl, --parallel, --metrics,
    --api-key-file, --mmproj (vision), --embeddings --pooling (embeddings), args.extra."""
    if not isinstance(engine, dict) or not engine.get("model") or not engine.get("port"):
        raise AnsibleFilterError(f"llama_server engine entry needs model and port: {engine!r}")
    args = engine.get("args") or {}
    if llama_server_router_mode(engine):
        return _router_argv(engine, args, binary, listen_address, models_dir, key_file, default_ngl, threads)
    argv = [binary,
            "-m", _model_path(engine["model"], models_dir),
            "--alias", str(engine.get("served_name") or engine.get("route")),
            "--host", str(listen_address),
            "--port", str(engine["port"]),
            "-ngl", str(args.get("ngl", default_ngl)),
            "--parallel", str(engine.get("max_concurrency") or 1),
            "--metrics"]
    if engine.get("context"):
        argv += ["-c", str(engine["context"])]
    if threads:
        argv += ["-t", str(threads)]
    if key_file:
        argv += ["--api-key-file", key_file]
    if engine.get("vision") and args.get("mmproj"):
        argv += ["--mmproj", _model_path(args["mmproj"], models_dir)]
    if engine.get("embeddings"):
        argv += ["--embeddings", "--pooling", str(args.get("pooling", default_pooling))]
    argv += [str(x) for x in args.get("extra", [])]
    return argv


def _router_argv(engine, args, binary, listen_address, models_dir, key_file, default_ngl, threads):
    mmax = args.get("models_max")
    if not isinstance(mmax, int) or isinstance(mmax, bool) or mmax < 0:
        raise AnsibleFilterError(f"llama_server engine {engine.get('route')}: args.models_max must be an integer "
                                 f">= 0, got {mmax!r}")
    argv = [binary, "--models-dir", llama_server_engine_models_dir(engine, models_dir),
            "--models-max", str(mmax), "--host", str(listen_address), "--port", str(engine["port"]),
            "-ngl", str(args.get("ngl", default_ngl)), "--parallel", str(engine.get("max_concurrency") or 1),
            "--metrics"]
    if not args.get("models_autoload", False):
        argv.append("--no-models-autoload")
    sleep = args.get("sleep_idle_seconds")
    if sleep is not None:
        argv += ["--sleep-idle-seconds", str(int(sleep))]
    if engine.get("context"):
        argv += ["-c", str(engine["context"])]
    if threads:
        argv += ["-t", str(threads)]
    if key_file:
        argv += ["--api-key-file", key_file]
    argv += [str(x) for x in args.get("extra", [])]
    return argv


class FilterModule:
    def filters(self):
        return {"llama_server_argv": llama_server_argv,
                "llama_server_model_file": llama_server_model_file,
                "llama_server_router_mode": llama_server_router_mode,
                "llama_server_engine_models_dir": llama_server_engine_models_dir}
