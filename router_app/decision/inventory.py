"""Compile the router's configuration from the Ansible inventory model.

Pure Python (no Ansible imports), shared by the ``validate_inventory`` role (which checks the compiled config with
the router's own schema) and by the ``router`` role (which renders it).

Inventory shapes (see CONTRACTS.md):

* every host in ``gpu_nodes`` has ``homelab_address`` and ``engines: [{route, served_name, port, vision, aliases,
  max_concurrency, max_queue, queue_timeout_s, spill, failover, terminal, embeddings, api_key_env?}, ...]``;
* site variables ``homelab_router_port``, ``router_buckets``, ``router_tie_break``, ``router_size_promotions`` and
  ``router_embeddings_route`` have the shapes of the router config keys ``listen.port``, ``buckets``, ``tie_break``,
  ``size_promotions`` and ``embeddings.route``; the optional ``router_structured_fail_closed_buckets``,
  ``router_route_unknown_models`` and ``router_cors_allow_origins`` those of ``structured.fail_closed_buckets``,
  ``route_unknown_models`` and ``cors.allow_origins`` (None: the router's default).

One route per engine entry, across all GPU hosts, in inventory order. The route's upstream URL is
``http://<homelab_address>:<port>/v1`` and its upstream key is read from the environment variable named by
:func:`api_key_env_for` (the router role writes those variables into the router's 0600 EnvironmentFile).
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, NamedTuple, Optional

from ..cloud.inventory import cloud_routes_config

__all__ = [
    "DEFAULT_ADMIN_KEY_ENV",
    "DEFAULT_LISTEN_HOST",
    "DEFAULT_ROUTER_PORT",
    "RouteOwner",
    "api_key_env_for",
    "compile_router_config",
    "engine_url",
    "map_config_error",
    "route_owners",
    "validate_router_config",
]

DEFAULT_ROUTER_PORT = 4000
DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_ADMIN_KEY_ENV = "HOMELAB_ROUTER_ADMIN_KEY"

# Engine keys copied verbatim into the route when the engine sets them (None means "router default").
_OPTIONAL_ROUTE_KEYS = ("max_concurrency", "max_queue", "queue_timeout_s", "spill", "failover",
                        "first_token_timeout_s", "total_timeout_s")
# Runtimes whose OpenAI server honours stream_options.include_usage (the router may then ask for stream usage);
# an engine's own `stream_usage` wins.
_STREAM_USAGE_RUNTIMES = frozenset({"vllm", "llama_server"})
# Engine keys with an inventory-side default (always present in the route).
_FLAG_ROUTE_KEYS = ("vision", "terminal", "embeddings")


class RouteOwner(NamedTuple):
    """Where a route comes from: the GPU host and the index of the engine entry in its ``engines`` list."""

    host: str
    index: int


def api_key_env_for(route: str) -> str:
    """Environment variable holding the upstream API key of ``route``.

    ``eyes`` -> ``HOMELAB_ROUTE_EYES_API_KEY``; characters other than letters and digits become ``_``.
    """
    token = re.sub(r"[^A-Za-z0-9]", "_", str(route)).upper()
    return f"HOMELAB_ROUTE_{token}_API_KEY"


def engine_url(address: Any, port: Any) -> str:
    """Base URL of an engine's OpenAI-compatible API."""
    return f"http://{address}:{port}/v1"


def _engines_of(host_vars: Mapping[str, Any]) -> list:
    engines = host_vars.get("engines") if isinstance(host_vars, Mapping) else None
    return list(engines) if isinstance(engines, (list, tuple)) else []


def route_owners(gpu_hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, RouteOwner]:
    """Map each route name to the first (host, engine index) that declares it."""
    owners: dict[str, RouteOwner] = {}
    for host, hvars in gpu_hosts.items():
        for index, engine in enumerate(_engines_of(hvars)):
            if isinstance(engine, Mapping) and isinstance(engine.get("route"), str):
                owners.setdefault(engine["route"], RouteOwner(host, index))
    return owners


def _plain(value: Any) -> Any:
    """Deep copy into plain dict/list/scalars (inventory values may be Ansible's tagged or lazy containers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _aliases(value: Any) -> Any:
    if value is None:
        return []
    # a malformed value is passed through for the router's schema to report
    return list(value) if isinstance(value, (list, tuple)) else value


def _route_from_engine(host_vars: Mapping[str, Any], engine: Mapping[str, Any]) -> dict[str, Any]:
    route = str(engine.get("route"))
    out: dict[str, Any] = {
        "url": engine_url(host_vars.get("homelab_address"), engine.get("port")),
        "model": engine.get("served_name"),
        "api_key_env": engine.get("api_key_env") or api_key_env_for(route),
        "aliases": _aliases(engine.get("aliases")),
    }
    for key in _FLAG_ROUTE_KEYS:
        out[key] = engine.get(key, False)
        if out[key] is None:
            out[key] = False
    for key in _OPTIONAL_ROUTE_KEYS:
        if engine.get(key) is not None:
            out[key] = engine[key]
    su = engine.get("stream_usage")
    out["stream_usage"] = su if su is not None else engine.get("runtime") in _STREAM_USAGE_RUNTIMES
    cat = _catalog_of(engine)
    if cat is not None:
        out["catalog"] = cat
    if engine.get("runtime") == "ollama" and engine.get("keep_alive") is not None:
        # issue 12: Ollama takes keep_alive per request, not on its /v1 API: the router sends it
        # (router_app/catalog/keep_alive.py)
        out["keep_alive"] = _plain(engine["keep_alive"])
    return out


def _catalog_of(engine: Mapping[str, Any]) -> Optional[dict]:
    """Issue 14: the route's catalog block. A llama_server engine in router mode (args.models_max) is catalogued on
    demand with its models_max as the resident limit; an engine's own `catalog` mapping wins."""
    own = engine.get("catalog")
    if own is not None:
        return _plain(own)
    args = engine.get("args")
    if engine.get("runtime") == "llama_server" and isinstance(args, Mapping) and args.get("models_max") is not None:
        return {"engine": "llamacpp_router", "residency": "on_demand", "max_resident": args.get("models_max")}
    return None


def compile_router_config(
    gpu_hosts: Mapping[str, Mapping[str, Any]],
    *,
    router_port: Any = DEFAULT_ROUTER_PORT,
    buckets: Optional[Mapping[str, Any]] = None,
    tie_break: Optional[Iterable[str]] = None,
    size_promotions: Optional[Mapping[str, Any]] = None,
    embeddings_route: Optional[str] = None,
    listen_host: str = DEFAULT_LISTEN_HOST,
    admin_key_env: Optional[str] = DEFAULT_ADMIN_KEY_ENV,
    log_dir: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
    fail_closed_buckets: Optional[Iterable[str]] = None,
    route_unknown_models: Optional[bool] = None,
    cors_allow_origins: Optional[Iterable[str]] = None,
    cloud_routes: Optional[Mapping[str, Any]] = None,
    cloud: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Build the router config dict (the YAML the router reads) from the inventory.

    ``gpu_hosts`` maps each ``gpu_nodes`` host name to its variables (``homelab_address`` and ``engines`` are read).
    When ``embeddings_route`` is not given, the first engine with ``embeddings: true`` serves ``/v1/embeddings``.
    ``extra`` is merged last at the top level (access-control keys such as ``auth`` or ``store_path``).
    When two engines declare the same route name the first one wins; the validation role reports the duplicate.
    """
    routes: dict[str, dict[str, Any]] = {}
    first_embeddings: Optional[str] = None
    for _host, hvars in gpu_hosts.items():
        for engine in _engines_of(hvars):
            if not isinstance(engine, Mapping) or engine.get("route") is None:
                continue
            name = str(engine["route"])
            if name in routes:
                continue  # the first declaration wins (as in route_owners); validation reports the duplicate
            routes[name] = _route_from_engine(hvars, engine)
            if first_embeddings is None and engine.get("embeddings") is True:
                first_embeddings = name

    config: dict[str, Any] = {"listen": {"host": listen_host, "port": router_port}}
    if admin_key_env:
        config["admin_key_env"] = admin_key_env
    if log_dir:
        config["log_dir"] = log_dir
    for name, r in cloud_routes_config(cloud_routes, api_key_env_for).items():   # issue 18: router_cloud_routes
        routes.setdefault(name, r)      # an engine of the same name wins; validation reports the clash
    config["routes"] = routes
    config["buckets"] = dict(buckets or {})
    config["tie_break"] = list(tie_break or [])
    config["size_promotions"] = dict(size_promotions or {})
    embeddings = embeddings_route or first_embeddings
    if embeddings:
        config["embeddings"] = {"route": embeddings}
    # issue 11: None leaves the router's default (fail closed: [vision]; unknown models: 404; CORS: none)
    if fail_closed_buckets is not None:
        config["structured"] = {"fail_closed_buckets": list(fail_closed_buckets)}
    if route_unknown_models is not None:
        config["route_unknown_models"] = route_unknown_models
    if cors_allow_origins is not None:
        config["cors"] = {"allow_origins": list(cors_allow_origins)}
    if cloud:
        config["cloud"] = dict(cloud)
    if extra:
        config.update(extra)
    return _plain(config)


# --------------------------------------------------------------------------------------------------------------
# Mapping the router's schema errors back to the inventory


_SITE_KEYS = {
    "buckets": "router_buckets",
    "tie_break": "router_tie_break",
    "size_promotions": "router_size_promotions",
    "embeddings": "router_embeddings_route",
    "listen": "homelab_router_port",
    "structured": "router_structured_fail_closed_buckets",
    "route_unknown_models": "router_route_unknown_models",
    "cors": "router_cors_allow_origins",
    "cloud": "router_cloud",
}
# Router keys whose sub-key the inventory variable stands for (structured.fail_closed_buckets[0] -> ...[0]).
_SITE_SUBKEY = {"structured": "structured.fail_closed_buckets", "cors": "cors.allow_origins"}

# Route keys whose inventory field differs from the router key.
_ROUTE_FIELD = {"url": "port", "model": "served_name"}


def map_config_error(
    path: str,
    message: str,
    owners: Mapping[str, RouteOwner],
    site_host: str,
) -> tuple[str, str, str]:
    """Turn a router ``ConfigError(path, message)`` into ``(host, inventory field, reason)``.

    ``routes.<name>.<key>...`` belongs to the GPU host whose engine declares the route (field
    ``engines[<i>].<key>...``); ``buckets``/``tie_break``/``size_promotions``/``embeddings``/``listen`` belong to
    ``site_host`` (the gateway host whose ``router_*`` variables were compiled).
    """
    path = str(path)
    if path.startswith("routes."):
        rest = path[len("routes."):]
        # Route names cannot contain dots (the inventory checks this), so the first segment is the route.
        name, _, tail = rest.partition(".")
        bracket = name.find("[")
        if bracket > 0:  # e.g. routes.eyes[0] (not produced today, but be safe)
            name, tail = name[:bracket], name[bracket:] + ("." + tail if tail else "")
        owner = owners.get(name)
        if owner is not None:
            key, sep, deeper = tail.partition(".")
            key = _ROUTE_FIELD.get(key, key)
            field = f"engines[{owner.index}]" + (f".{key}{sep}{deeper}" if key else "")
            return owner.host, field, f"route '{name}': {message}"
        return site_host, "router_cloud_routes." + rest, f"route '{name}': {message}"   # no engine: a cloud route
    if path == "routes":
        return "gpu_nodes", "engines", message
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    if head in _SITE_KEYS:
        inv = _SITE_KEYS[head]
        if head == "embeddings":
            return site_host, inv, message
        if head == "listen":
            return site_host, inv, f"{path}: {message}"
        sub = _SITE_SUBKEY.get(head)
        if sub and path.startswith(sub):
            return site_host, inv + path[len(sub):], message
        return site_host, inv + path[len(head):], message
    return site_host, path, message


def validate_router_config(
    config: Mapping[str, Any],
    owners: Mapping[str, RouteOwner],
    site_host: str,
) -> Optional[list[tuple[str, str, str]]]:
    """Check ``config`` with ``router_app.decision.config.validate_dict`` and map each error to (host, field, reason).

    Returns None when the router's schema module cannot be imported (the inventory checks still run without it).
    """
    try:
        from router_app.decision.config import validate_dict  # noqa: PLC0415 - optional at import time
    except ImportError:
        return None
    return [map_config_error(e.path, e.message, owners, site_host) for e in validate_dict(dict(config))]
