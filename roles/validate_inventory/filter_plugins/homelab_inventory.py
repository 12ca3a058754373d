"""Inventory validation for homelab-ai: plain Python checks plus thin Ansible filters.

The checks work on a *model*, a plain dict (tests build it by hand; ``gather_model`` builds it from Ansible's
``hostvars`` and ``groups``)::

    {
      "groups":   {"gpu_nodes": ["ubuntu-4090", ...], "gateway": ["ai-gateway"], ...},
      "hostvars": {"ubuntu-4090": {"homelab_address": "10.20.0.11", "homelab_vlan": "ai", "gpus": [...],
                                    "engines": [...]}, ...},
      "site":     {"homelab_vlans": [...], "homelab_router_port": 4000, "router_buckets": {...}, ...},
    }

``site`` holds the group_vars/all view (the control node's own variables); a gateway host's own ``router_*`` and
``homelab_router_port`` values, when present in its hostvars, win over ``site`` for that host.

Every problem is an :class:`InventoryError` ``(host, field, reason)``; ``str()`` gives ``"<host>: <field>: <reason>"``.
Site-wide settings (VLANs) are reported against host ``all``; the router's bucket settings against the gateway host
that would render them.

Memory-fit rule (documented for users in roles/validate_inventory/README.md and defaults/main.yml)::

    weights_gib  = params_b * 1e9 * weight_bits / 8 / 2**30
    kv_gib       = engine.kv_gib  if set, else  context / 1024 * kv_gib_per_1k_tokens
    need_gib     = weights_gib + kv_gib + overhead_gib
    budget_gib   = cards_named x min(card.vram_gib) x engine.gpu_memory_utilization   (per card, homelab_gpus.py)

An engine fails when ``need_gib > budget_gib``; a card fails when the engines naming it claim a
``gpu_memory_utilization`` sum above 1, or, on unified memory (``gpus[].unified: true``), leave less than
``unified_reserve_gib`` to the OS. Engines without a fraction (Ollama, LM Studio, llama.cpp) share what is left.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Optional

try:  # Ansible >= 2.19 hands undefined values over as jinja2 Undefined markers instead of raising
    from jinja2 import Undefined as _JinjaUndefined
except ImportError:  # pragma: no cover
    _JinjaUndefined = None

def _shared(name: str):
    """A module of the repository's shared plugins/filter directory (the role rules live there)."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[3] / "plugins" / "filter" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


homelab_rules = _shared("homelab_rules")
homelab_site_roles = _shared("homelab_site_roles")
homelab_gpus = _shared("homelab_gpus")

try:  # router_app is installed (editable) in the project venv; the checks still run without it.
    from router_app.decision import inventory as router_inventory
except ImportError:  # pragma: no cover - exercised only outside the venv
    router_inventory = None

RUNTIMES = ("vllm", "ollama", "llama_server", "lmstudio")
# Runtimes that take gpu_memory_utilization (vLLM's --gpu-memory-utilization); for the others it is optional and,
# when given, counts as the engine's claimed share of its card(s).
UTILIZATION_RUNTIMES = ("vllm",)
# Runtimes that run one server per host for all their engine entries (one port shared by the entries).
ONE_SERVER_RUNTIMES = ("ollama", "lmstudio")

DEFAULT_SETTINGS: dict[str, Any] = {
    "runtimes": list(RUNTIMES),
    "overhead_gib": 2.0,
    "kv_gib_per_1k_tokens": 0.125,
    "unified_reserve_gib": 8.0,
    "ssh_port": 22,
    "caddy_ports": [80, 443],
    "caddy_admin_port": 2019,
    "netdata_port": 19999,
    "proxmox_api_port": 8006,
    "wireguard_port": 51820,
    "router_schema": True,
}

# Groups whose hosts must carry homelab_address and homelab_vlan.
ADDRESSED_GROUPS = ("firewall", "proxmox", "lxc_guests", "gateway", "gpu_nodes", "windows", "netdata",
                    "netdata_parent", "wireguard")

ROUTE_NAME_RE = homelab_rules.ROUTE_NAME_RE  # one rule for validation and the engine roles

# Per host: the variables the checks read (a host that defines none of them is skipped).
HOST_KEYS = (
    "homelab_address", "homelab_vlan", "gpus", "engines", "homelab_services", "lxc",
    "ansible_port", "ansible_connection",
    "common_ssh_port", "netdata_port", "wireguard_listen_port", "vault_engine_api_keys", "vault_cloud_api_keys",
)
# Read only on gateway hosts (their own view of the router settings).
GATEWAY_KEYS = (
    "homelab_router_port", "router_buckets", "router_tie_break", "router_size_promotions",
    "router_embeddings_route", "caddy_http_port", "caddy_https_port", "caddy_admin_listen",
    "router_structured_fail_closed_buckets", "router_route_unknown_models", "router_cors_allow_origins",
    "router_cloud_routes", "router_cloud",
)
SITE_KEYS = ("homelab_vlans", "homelab_router_port", "router_buckets", "router_tie_break",
             "router_size_promotions", "router_embeddings_route",
             "router_structured_fail_closed_buckets", "router_route_unknown_models", "router_cors_allow_origins",
             "router_cloud_routes", "router_cloud")

ROUTER_KEYS = ("homelab_router_port", "router_buckets", "router_tie_break", "router_size_promotions",
               "router_embeddings_route",
               "router_structured_fail_closed_buckets", "router_route_unknown_models", "router_cors_allow_origins",
               "router_cloud_routes", "router_cloud")   # issue 18: cloud routes (router_app/cloud/inventory.py)

_MISSING = object()


class InventoryError(NamedTuple):
    host: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.host}: {self.field}: {self.reason}"


# ----------------------------------------------------------------------------------------------------------------
# small type helpers

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple))


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if _is_int(v):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "mapping"
    if _is_list(v):
        return "list"
    return type(v).__name__


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _gib(x: float) -> str:
    return f"{x:.1f} GiB"


def _settings(settings: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(DEFAULT_SETTINGS)
    for k, v in (settings or {}).items():
        if v is not None:
            out[k] = v
    return out


def _members(model: Mapping[str, Any], group: str) -> list[str]:
    hosts = (model.get("groups") or {}).get(group) or []
    return [h for h in hosts if h in (model.get("hostvars") or {})]


def _host_groups(model: Mapping[str, Any], host: str) -> set[str]:
    return {g for g, hosts in (model.get("groups") or {}).items() if host in (hosts or [])}


# ----------------------------------------------------------------------------------------------------------------
# engine field schema

def _check_spill(value: Any) -> Optional[str]:
    if value is None or _is_str(value):
        return None
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"text", "image"})
        if unknown:
            return f"unknown key(s) {', '.join(unknown)}: spill is a route name or a mapping with text and/or image"
        for k in ("text", "image"):
            if value.get(k) is not None and not _is_str(value.get(k)):
                return f"spill.{k} must be a route name (string), got {_tname(value.get(k))}"
        return None
    return f"must be a route name or a mapping {{text: <route>, image: <route>}}, got {_tname(value)}"


# name -> (required, check(value) -> problem or None)
def _engine_schema(runtimes: list[str]) -> dict[str, tuple[bool, Any]]:
    def req_str(v):
        return None if _is_str(v) else f"must be a non-empty string, got {_tname(v)}"

    def route(v):
        if not _is_str(v):
            return f"must be a non-empty string, got {_tname(v)}"
        if not ROUTE_NAME_RE.match(v):
            return f"{v!r} must match {ROUTE_NAME_RE.pattern} ({homelab_rules.ROUTE_NAME_HELP})"
        return None

    def runtime(v):
        if v not in runtimes:
            return f"unknown runtime {_fmt(v)}: expected one of {', '.join(runtimes)}"
        return None

    def pos_num(v):
        return None if _is_num(v) and v > 0 else f"must be a number > 0, got {_fmt(v)} ({_tname(v)})"

    def bits(v):
        return None if _is_num(v) and 0 < v <= 32 else f"must be a number in (0, 32], got {_fmt(v)} ({_tname(v)})"

    def pos_int(v):
        return None if _is_int(v) and v > 0 else f"must be an integer > 0, got {_fmt(v)} ({_tname(v)})"

    def util(v):
        return None if _is_num(v) and 0 < v <= 1 else f"must be a number in (0, 1], got {_fmt(v)} ({_tname(v)})"

    def port(v):
        return None if _is_int(v) and 1 <= v <= 65535 else f"must be an integer port 1-65535, got {_fmt(v)} ({_tname(v)})"

    def opt_bool(v):
        return None if v is None or isinstance(v, bool) else f"must be true or false, got {_fmt(v)} ({_tname(v)})"

    def opt_pos_int(v):
        return None if v is None or (_is_int(v) and v >= 1) else f"must be an integer >= 1, got {_fmt(v)} ({_tname(v)})"

    def opt_nonneg_int(v):
        return None if v is None or (_is_int(v) and v >= 0) else f"must be an integer >= 0, got {_fmt(v)} ({_tname(v)})"

    def opt_pos_num(v):
        return None if v is None or (_is_num(v) and v > 0) else f"must be a number > 0, got {_fmt(v)} ({_tname(v)})"

    def opt_nonneg_num(v):
        return None if v is None or (_is_num(v) and v >= 0) else f"must be a number >= 0, got {_fmt(v)} ({_tname(v)})"

    def opt_route_name(v):
        return None if v is None or _is_str(v) else f"must be a route name (string), got {_tname(v)}"

    def opt_str(v):
        return None if v is None or _is_str(v) else f"must be a non-empty string, got {_tname(v)}"

    def aliases(v):
        if v is None:
            return None
        if not _is_list(v):
            return f"must be a list of strings, got {_tname(v)}"
        bad = [i for i, a in enumerate(v) if not _is_str(a)]
        return f"item [{bad[0]}] must be a non-empty string" if bad else None

    def keep_alive(v):
        ok = (_is_int(v) or (_is_str(v) and re.fullmatch(r"-?\d+(\.\d+)?(ms|s|m|h)?", v.strip())))
        return None if v is None or ok else f"must be a duration such as 5m, 1h, -1 (forever) or 0, got {_fmt(v)}"

    def args(v):
        return None if v is None or isinstance(v, Mapping) else f"must be a mapping of flag: value, got {_tname(v)}"

    return {
        "route": (True, route),
        "runtime": (True, runtime),
        "model": (True, req_str),
        "served_name": (True, req_str),
        "params_b": (True, pos_num),
        "weight_bits": (True, bits),
        "context": (True, pos_int),
        "gpu_memory_utilization": (True, util),
        "port": (True, port),
        "vision": (False, opt_bool),
        "terminal": (False, opt_bool),
        "embeddings": (False, opt_bool),
        "max_concurrency": (False, opt_pos_int),
        "max_queue": (False, opt_nonneg_int),
        "queue_timeout_s": (False, opt_pos_num),
        "first_token_timeout_s": (False, opt_pos_num),
        "total_timeout_s": (False, opt_pos_num),
        "stream_usage": (False, opt_bool),
        "kv_gib": (False, opt_nonneg_num),
        "aliases": (False, aliases),
        "spill": (False, _check_spill),
        "failover": (False, opt_route_name),
        "api_key_env": (False, opt_str),
        "args": (False, args),
        "gpus": (False, lambda v: None),  # card references: checked per card in check_fit
        "keep_alive": (False, keep_alive),
    }


# ----------------------------------------------------------------------------------------------------------------
# individual checks (each returns a list of InventoryError)

def check_vlans(model: Mapping[str, Any]) -> list[InventoryError]:
    errs: list[InventoryError] = []
    vlans = (model.get("site") or {}).get("homelab_vlans")
    if vlans is None:
        return [InventoryError("all", "homelab_vlans", "is required (a list of {name, id, subnet, ...})")]
    if not _is_list(vlans):
        return [InventoryError("all", "homelab_vlans", f"must be a list, got {_tname(vlans)}")]
    seen_ids: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    nets: list[tuple[str, Any, int]] = []
    for i, v in enumerate(vlans):
        f = f"homelab_vlans[{i}]"
        if not isinstance(v, Mapping):
            errs.append(InventoryError("all", f, f"must be a mapping, got {_tname(v)}"))
            continue
        name = v.get("name")
        label = f"VLAN {name!r}" if _is_str(name) else f"VLAN #{i}"
        if not _is_str(name):
            errs.append(InventoryError("all", f"{f}.name", f"is required (a non-empty string), got {_tname(name)}"))
        elif name in seen_names:
            errs.append(InventoryError("all", f"{f}.name",
                                       f"duplicate VLAN name {name!r} (also homelab_vlans[{seen_names[name]}])"))
        else:
            seen_names[name] = i
        vid = v.get("id")
        if not _is_int(vid):
            errs.append(InventoryError("all", f"{f}.id", f"{label}: id must be an integer, got {_fmt(vid)} ({_tname(vid)})"))
        elif not 1 <= vid <= 4094:
            errs.append(InventoryError("all", f"{f}.id", f"{label}: id {vid} is outside 1-4094"))
        elif vid in seen_ids:
            errs.append(InventoryError("all", f"{f}.id", f"{label}: id {vid} is duplicated (also VLAN {seen_ids[vid]!r})"))
        else:
            seen_ids[vid] = name if _is_str(name) else f"#{i}"
        subnet = v.get("subnet")
        try:
            net = ipaddress.IPv4Network(str(subnet), strict=True) if _is_str(subnet) else None
            if net is None:
                raise ValueError(f"a CIDR string is required, got {_tname(subnet)}")
        except ValueError as exc:
            errs.append(InventoryError("all", f"{f}.subnet", f"{label}: {subnet!r} is not an IPv4 network in CIDR form ({exc})"))
        else:
            for other_name, other, j in nets:
                if net.overlaps(other):
                    errs.append(InventoryError("all", f"{f}.subnet",
                                               f"{label}: {net} overlaps VLAN {other_name!r} ({other}, homelab_vlans[{j}])"))
            nets.append((name if _is_str(name) else f"#{i}", net, i))
        if "isolated" in v and not isinstance(v.get("isolated"), bool):
            errs.append(InventoryError("all", f"{f}.isolated", f"{label}: must be true or false, got {_fmt(v.get('isolated'))}"))
        for key in ("parent_if", "description"):
            if v.get(key) is not None and not isinstance(v.get(key), str):
                errs.append(InventoryError("all", f"{f}.{key}", f"{label}: must be a string, got {_tname(v.get(key))}"))
    return errs


def _vlan_index(model: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    vlans = (model.get("site") or {}).get("homelab_vlans")
    for v in vlans if _is_list(vlans) else []:
        if isinstance(v, Mapping) and _is_str(v.get("name")):
            if v["name"] in out:
                continue  # duplicate name: the first definition counts (reported by check_vlans)
            try:
                out[v["name"]] = ipaddress.IPv4Network(str(v.get("subnet")), strict=True)
            except ValueError:
                out[v["name"]] = None  # reported by check_vlans
    return out


def check_addresses(model: Mapping[str, Any]) -> list[InventoryError]:
    errs: list[InventoryError] = []
    vlans = _vlan_index(model)
    hostvars = model.get("hostvars") or {}
    addressed = set()
    for g in ADDRESSED_GROUPS:
        addressed.update(_members(model, g))
    seen: dict[Any, str] = {}
    for host in hostvars:
        hv = hostvars[host] or {}
        needs = host in addressed
        addr_raw = hv.get("homelab_address", _MISSING)
        vlan = hv.get("homelab_vlan", _MISSING)
        if addr_raw is _MISSING and vlan is _MISSING and not needs:
            continue
        addr = None
        if addr_raw is _MISSING or addr_raw is None:
            errs.append(InventoryError(host, "homelab_address", "is required (the host's IPv4 address in its VLAN)"))
        else:
            try:
                addr = ipaddress.IPv4Address(str(addr_raw))
            except ValueError:
                errs.append(InventoryError(host, "homelab_address", f"{addr_raw!r} is not an IPv4 address"))
        if vlan is _MISSING or vlan is None:
            errs.append(InventoryError(host, "homelab_vlan", "is required (the name of a VLAN in homelab_vlans)"))
            continue
        if vlan not in vlans:
            known = ", ".join(sorted(vlans)) or "none defined"
            errs.append(InventoryError(host, "homelab_vlan", f"unknown VLAN {_fmt(vlan)} (homelab_vlans has: {known})"))
            continue
        net = vlans[vlan]
        if addr is None or net is None:
            continue
        if addr not in net:
            errs.append(InventoryError(host, "homelab_address", f"{addr} is outside VLAN {vlan!r} subnet {net}"))
        elif net.prefixlen < 31 and addr in (net.network_address, net.broadcast_address):
            which = "network" if addr == net.network_address else "broadcast"
            errs.append(InventoryError(host, "homelab_address", f"{addr} is the {which} address of VLAN {vlan!r} ({net})"))
        if addr in seen:
            errs.append(InventoryError(host, "homelab_address", f"{addr} is also the address of host {seen[addr]}"))
        else:
            seen[addr] = host
    return errs


def _engines(hv: Mapping[str, Any]) -> list:
    e = hv.get("engines")
    return list(e) if _is_list(e) else []


def check_engine_fields(model: Mapping[str, Any], settings: Mapping[str, Any]) -> list[InventoryError]:
    errs: list[InventoryError] = []
    schema = _engine_schema(list(settings["runtimes"]))
    hostvars = model.get("hostvars") or {}
    gpu_nodes = set(_members(model, "gpu_nodes"))
    for host, hv in hostvars.items():
        hv = hv or {}
        engines = hv.get("engines")
        if host in gpu_nodes and engines is None:
            errs.append(InventoryError(host, "engines", "is required on a gpu_nodes host (a list of engine entries)"))
            continue
        if engines is None:
            continue
        if not _is_list(engines):
            errs.append(InventoryError(host, "engines", f"must be a list, got {_tname(engines)}"))
            continue
        gpus = hv.get("gpus")
        if engines and host not in gpu_nodes:
            errs.append(InventoryError(host, "engines", "engines are defined but the host is not in group gpu_nodes "
                                                        "(add it to gpu_nodes in hosts.yml)"))
        for i, e in enumerate(engines):
            f = f"engines[{i}]"
            if not isinstance(e, Mapping):
                errs.append(InventoryError(host, f, f"must be a mapping, got {_tname(e)}"))
                continue
            for key, (required, check) in schema.items():
                if key not in e or e.get(key) is None:
                    if key == "gpu_memory_utilization" and ((_is_list(gpus) and not gpus)
                                                            or e.get("runtime") not in UTILIZATION_RUNTIMES):
                        continue  # CPU-only host (gpus: []), or a runtime that never receives the fraction
                    if required:
                        errs.append(InventoryError(host, f"{f}.{key}", "is required"))
                    continue
                problem = check(e[key])
                if problem:
                    errs.append(InventoryError(host, f"{f}.{key}", problem))
        # gpus
        gpus = hv.get("gpus")
        if engines and gpus is None:
            errs.append(InventoryError(host, "gpus", "is required on a host with engines (a list of {name, vram_gib}; "
                                                     "[] for CPU-only engines)"))
        elif gpus is not None:
            if not _is_list(gpus):
                errs.append(InventoryError(host, "gpus", f"must be a list of {{name, vram_gib}}, got {_tname(gpus)}"))
            else:
                for j, g in enumerate(gpus):
                    gf = f"gpus[{j}]"
                    if not isinstance(g, Mapping):
                        errs.append(InventoryError(host, gf, f"must be a mapping, got {_tname(g)}"))
                        continue
                    if not _is_str(g.get("name")):
                        errs.append(InventoryError(host, f"{gf}.name", "is required (a non-empty string)"))
                    if not (_is_num(g.get("vram_gib")) and g.get("vram_gib") > 0):
                        errs.append(InventoryError(host, f"{gf}.vram_gib",
                                                   f"must be a number > 0, got {_fmt(g.get('vram_gib'))}"))
                    if g.get("unified") is not None and not isinstance(g.get("unified"), bool):
                        errs.append(InventoryError(host, f"{gf}.unified", f"must be true or false, got {_fmt(g.get('unified'))}"))
    return errs


def engine_memory(engine: Mapping[str, Any], settings: Optional[Mapping[str, Any]] = None) -> dict[str, float]:
    """Estimated memory of one engine in GiB: weights, KV allowance, fixed overhead and their total."""
    s = _settings(settings)
    weights = float(engine["params_b"]) * 1e9 * float(engine["weight_bits"]) / 8 / 2 ** 30
    kv = engine.get("kv_gib")
    kv = float(kv) if _is_num(kv) else float(engine["context"]) / 1024 * float(s["kv_gib_per_1k_tokens"])
    overhead = float(s["overhead_gib"])
    return {"weights_gib": weights, "kv_gib": kv, "overhead_gib": overhead, "total_gib": weights + kv + overhead}


def check_fit(model: Mapping[str, Any], settings: Mapping[str, Any]) -> list[InventoryError]:
    """Per-card checks (plugins/filter/homelab_gpus.py): card identities, the cards each engine names, tensor
    parallelism, the VRAM fit of each engine and the utilization sum per card (unified memory: the OS reserve)."""
    errs: list[InventoryError] = []
    schema = _engine_schema(list(settings["runtimes"]))
    need_keys = ("params_b", "weight_bits", "context")

    def memory(e: Mapping[str, Any]) -> Optional[dict[str, float]]:
        if any(e.get(k) is None or schema[k][1](e.get(k)) for k in need_keys):
            return None  # field errors already reported
        if e.get("kv_gib") is not None and schema["kv_gib"][1](e.get("kv_gib")):
            return None
        if e.get("gpu_memory_utilization") is not None and schema["gpu_memory_utilization"][1](e["gpu_memory_utilization"]):
            return None
        return engine_memory(e, settings)

    for host, hv in (model.get("hostvars") or {}).items():
        hv = hv or {}
        gpus = hv.get("gpus")
        if not _is_list(gpus):
            continue  # reported by check_engine_fields
        errs += [InventoryError(host, f, r) for f, r in homelab_gpus.card_problems(gpus)]
        if not gpus:
            errs += [InventoryError(host, f"engines[{i}].gpus", f"names {e['gpus']} but the host lists no cards (gpus: [])")
                     for i, e in enumerate(_engines(hv)) if isinstance(e, Mapping) and e.get("gpus")]
            continue
        errs += [InventoryError(host, f, r) for f, r in homelab_gpus.fit_problems(_engines(hv), gpus, memory, settings)]
    return errs


def _services(model: Mapping[str, Any], host: str, settings: Mapping[str, Any]) -> list[tuple[str, int, str, str]]:
    """(proto, port, service, field) listeners the site puts on ``host``."""
    hv = (model.get("hostvars") or {}).get(host) or {}
    groups = _host_groups(model, host)
    out: list[tuple[str, int, str, str]] = []
    managed = bool(groups & set(ADDRESSED_GROUPS))
    if managed and "firewall" not in groups:
        if hv.get("common_ssh_port") is not None:
            out.append(("tcp", hv["common_ssh_port"], "ssh", "common_ssh_port"))
        else:
            conn = hv.get("ansible_connection")
            port = hv.get("ansible_port") if conn in (None, "ssh", "paramiko", "ansible.builtin.ssh", "smart") else None
            out.append(("tcp", port if port is not None else settings["ssh_port"], "ssh",
                        "ansible_port" if port is not None else "ssh"))
    if "gateway" in groups:
        rport = hv.get("homelab_router_port", (model.get("site") or {}).get("homelab_router_port"))
        out.append(("tcp", rport if rport is not None else 4000, "router", "homelab_router_port"))
        http_p, https_p = list(settings["caddy_ports"])[:2]
        out.append(("tcp", hv.get("caddy_http_port", http_p), "caddy http", "caddy_http_port"))
        out.append(("tcp", hv.get("caddy_https_port", https_p), "caddy https", "caddy_https_port"))
        admin = hv.get("caddy_admin_listen")
        admin_port = settings["caddy_admin_port"]
        if isinstance(admin, str) and re.search(r":(\d+)$", admin):
            admin_port = int(re.search(r":(\d+)$", admin).group(1))
        if admin not in ("off", ""):
            out.append(("tcp", admin_port, "caddy admin API", "caddy_admin_listen"))
    if groups & {"netdata", "netdata_parent"}:
        out.append(("tcp", hv.get("netdata_port", settings["netdata_port"]), "netdata", "netdata_port"))
    if "proxmox" in groups:
        out.append(("tcp", settings["proxmox_api_port"], "proxmox api", "proxmox api"))
    if "wireguard" in groups:
        out.append(("udp", hv.get("wireguard_listen_port", settings["wireguard_port"]), "wireguard", "wireguard_listen_port"))
    shared: set[tuple[str, int]] = set()
    for i, e in enumerate(_engines(hv)):
        if isinstance(e, Mapping) and e.get("runtime") in ONE_SERVER_RUNTIMES and _is_int(e.get("port")):
            if (e["runtime"], e["port"]) in shared:
                continue  # the same server as an earlier entry (one Ollama / LM Studio per host, many models)
            shared.add((e["runtime"], e["port"]))
        if isinstance(e, Mapping) and _is_int(e.get("port")):
            out.append(("tcp", e["port"], f"engine {e.get('route', i)!r} ({e.get('runtime', '?')})", f"engines[{i}].port"))
    extra = hv.get("homelab_services")
    for i, s in enumerate(extra if _is_list(extra) else []):
        if isinstance(s, Mapping) and _is_int(s.get("port")):
            out.append((str(s.get("proto", "tcp")), s["port"], str(s.get("name", f"service #{i}")), f"homelab_services[{i}].port"))
    return out


def check_ports(model: Mapping[str, Any], settings: Mapping[str, Any]) -> list[InventoryError]:
    errs: list[InventoryError] = []
    for host, hv in (model.get("hostvars") or {}).items():
        hv = hv or {}
        extra = hv.get("homelab_services")
        if extra is not None:
            if not _is_list(extra):
                errs.append(InventoryError(host, "homelab_services", f"must be a list of {{name, port, proto}}, got {_tname(extra)}"))
            else:
                for i, s in enumerate(extra):
                    if not isinstance(s, Mapping) or not (_is_int(s.get("port")) and 1 <= s["port"] <= 65535):
                        errs.append(InventoryError(host, f"homelab_services[{i}]", "must be {name, port: 1-65535, proto: tcp|udp}"))
                    elif s.get("proto", "tcp") not in ("tcp", "udp"):
                        errs.append(InventoryError(host, f"homelab_services[{i}].proto", f"must be tcp or udp, got {_fmt(s.get('proto'))}"))
        taken: dict[tuple[str, int], str] = {}
        for proto, port, name, field in _services(model, host, settings):
            if not (_is_int(port) and 1 <= port <= 65535):
                if not field.startswith(("engines[", "homelab_services[")):
                    errs.append(InventoryError(host, field, f"{name} port must be an integer 1-65535, got {_fmt(port)}"))
                continue
            key = (proto, port)
            if key in taken:
                errs.append(InventoryError(host, field, f"{proto} port {port} of {name} is already used by {taken[key]} on this host"))
            else:
                taken[key] = name
    return errs


def _routes(model: Mapping[str, Any]) -> tuple[dict[str, tuple[str, int, Mapping[str, Any]]], list[InventoryError]]:
    """route -> (host, index, engine) for well-formed route names, plus duplicate-name errors."""
    routes: dict[str, tuple[str, int, Mapping[str, Any]]] = {}
    errs: list[InventoryError] = []
    hostvars = model.get("hostvars") or {}
    for host in _members(model, "gpu_nodes"):
        for i, e in enumerate(_engines(hostvars.get(host) or {})):
            if not isinstance(e, Mapping) or not _is_str(e.get("route")):
                continue
            name = e["route"]
            if name in routes:
                oh, oi, _ = routes[name]
                errs.append(InventoryError(host, f"engines[{i}].route",
                                           f"duplicate route name {name!r} (already engines[{oi}] on host {oh})"))
                continue
            routes[name] = (host, i, e)
    return routes, errs


def _targets(e: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(field suffix, target, carries images) for an engine's spill and failover entries."""
    out = []
    s = e.get("spill")
    if _is_str(s):
        out.append(("spill", s, True))
    elif isinstance(s, Mapping):
        if _is_str(s.get("text")):
            out.append(("spill.text", s["text"], False))
        if _is_str(s.get("image")):
            out.append(("spill.image", s["image"], True))
    if _is_str(e.get("failover")):
        out.append(("failover", e["failover"], True))
    return out


def _find_cycle(edges: Mapping[str, list[str]]) -> Optional[list[str]]:
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(n: str) -> Optional[list[str]]:
        state[n] = 1
        path.append(n)
        for m in edges.get(n, []):
            if m not in edges or m == n:  # unknown targets and self-loops are reported on their own
                continue
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = walk(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in edges:
        if n not in state:
            found = walk(n)
            if found:
                return found
    return None


def check_routes(model: Mapping[str, Any]) -> list[InventoryError]:
    routes, errs = _routes(model)
    if not routes:
        if _members(model, "gpu_nodes"):
            errs.append(InventoryError("gpu_nodes", "engines", "no engine with a route is defined on any gpu_nodes host"))
        return errs
    aliases: dict[str, str] = {}
    for name, (host, i, e) in routes.items():
        f = f"engines[{i}]"
        alias_list = e.get("aliases") if _is_list(e.get("aliases")) else []
        for j, a in enumerate(alias_list):
            if not _is_str(a):
                continue
            if a in aliases and aliases[a] != name:
                errs.append(InventoryError(host, f"{f}.aliases[{j}]", f"alias {a!r} of route {name!r} is also an alias of route {aliases[a]!r}"))
            else:
                aliases.setdefault(a, name)
        terminal = e.get("terminal") is True
        targets = _targets(e)
        for suffix, target, carries_images in targets:
            if target not in routes:
                errs.append(InventoryError(host, f"{f}.{suffix}", f"route {name!r} names route {target!r}, which no engine serves "
                                                                  f"(known routes: {', '.join(sorted(routes))})"))
            elif target == name:
                errs.append(InventoryError(host, f"{f}.{suffix}", f"route {name!r} spills or fails over to itself"))
            elif e.get("vision") is True and carries_images and routes[target][2].get("vision") is not True:
                kind = "fails over" if suffix == "failover" else "spills"
                hint = " (use spill: {text: <route>, image: <vision route>})" if suffix == "spill" else ""
                errs.append(InventoryError(host, f"{f}.{suffix}",
                                           f"route {name!r} has vision and {kind} image requests to {target!r}, "
                                           f"which has no vision{hint}"))
        if terminal and targets:
            errs.append(InventoryError(host, f"{f}.terminal", f"route {name!r} is terminal (the bottom of the chain) "
                                                              f"and must not spill or fail over"))
        if not terminal and not _is_str(e.get("failover")):
            errs.append(InventoryError(host, f"{f}.failover", f"route {name!r} needs a failover route unless it is "
                                                              f"terminal: true (every chain must end at a terminal route)"))
    if not any(e.get("terminal") is True for _, _, e in routes.values()):
        errs.append(InventoryError("gpu_nodes", "engines[*].terminal",
                                   "no route is terminal: mark the bottom of the fallback chain with terminal: true"))
    # Text and image requests follow different spill edges; look for a cycle in each.
    for images in (False, True):
        skip = "spill.text" if images else "spill.image"
        used = {n: [(sfx, t) for sfx, t, _ in _targets(e) if sfx != skip] for n, (_, _, e) in routes.items()}
        cycle = _find_cycle({n: [t for _, t in out] for n, out in used.items()})
        if cycle:
            host, i, _ = routes[cycle[0]]
            suffix = next((sfx for sfx, t in used[cycle[0]] if t == cycle[1]), "failover")
            kind = "image" if images else "text"
            errs.append(InventoryError(host, f"engines[{i}].{suffix}",
                                       f"fallback cycle for {kind} requests: " + " -> ".join(cycle)))
            break
    return errs


def _router_view(model: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(host, router settings) for each gateway host; ('all', site) when there is none."""
    site = model.get("site") or {}
    hostvars = model.get("hostvars") or {}
    views = []
    for gw in _members(model, "gateway"):
        hv = hostvars.get(gw) or {}
        views.append((gw, {k: hv[k] if k in hv else site.get(k) for k in ROUTER_KEYS}))
    if not views:
        views.append(("all", {k: site.get(k) for k in ROUTER_KEYS}))
    # one view per distinct setting: identical gateways would repeat each error
    out, seen = [], []
    for host, view in views:
        if view not in seen:
            seen.append(view)
            out.append((host, view))
    return out


def check_router_settings(model: Mapping[str, Any]) -> list[InventoryError]:
    routes, _ = _routes(model)
    errs: list[InventoryError] = []
    for host, view in _router_view(model):
        port = view.get("homelab_router_port")
        # on a gateway host check_ports reports a bad router port
        if host == "all" and port is not None and not (_is_int(port) and 1 <= port <= 65535):
            errs.append(InventoryError(host, "homelab_router_port", f"must be an integer port 1-65535, got {_fmt(port)}"))
        clouds = view.get("router_cloud_routes")
        clouds = set(clouds) if isinstance(clouds, Mapping) else set()
        buckets = view.get("router_buckets")
        if buckets is None:
            errs.append(InventoryError(host, "router_buckets", "is required (bucket name -> {route, keywords})"))
            buckets = {}
        elif not isinstance(buckets, Mapping):
            errs.append(InventoryError(host, "router_buckets", f"must be a mapping of bucket name -> {{route, keywords}}, got {_tname(buckets)}"))
            buckets = {}
        for b, spec in buckets.items():
            f = f"router_buckets.{b}"
            if not isinstance(spec, Mapping):
                errs.append(InventoryError(host, f, f"must be a mapping {{route, keywords}}, got {_tname(spec)}"))
                continue
            r = spec.get("route")
            if not _is_str(r):
                errs.append(InventoryError(host, f"{f}.route", "is required (the route this bucket goes to)"))
            elif routes and r not in routes and r not in clouds:
                errs.append(InventoryError(host, f"{f}.route", f"bucket {b!r} names route {r!r}, which no engine serves "
                                                               f"(known routes: {', '.join(sorted(routes))})"))
            kw = spec.get("keywords")
            if kw is not None and (not _is_list(kw) or not all(_is_str(k) for k in kw)):
                errs.append(InventoryError(host, f"{f}.keywords", "must be a list of non-empty strings"))
        tie = view.get("router_tie_break")
        if tie is not None:
            if not _is_list(tie):
                errs.append(InventoryError(host, "router_tie_break", f"must be a list of bucket names, got {_tname(tie)}"))
            else:
                for i, b in enumerate(tie):
                    if b not in buckets:
                        errs.append(InventoryError(host, f"router_tie_break[{i}]", f"names bucket {_fmt(b)}, which router_buckets does not define"))
        proms = view.get("router_size_promotions")
        if proms is not None:
            if not isinstance(proms, Mapping):
                errs.append(InventoryError(host, "router_size_promotions", f"must be a mapping bucket -> [{{over_tokens, route}}], got {_tname(proms)}"))
            else:
                for b, steps in proms.items():
                    f = f"router_size_promotions.{b}"
                    if b not in buckets:
                        errs.append(InventoryError(host, f, f"names bucket {b!r}, which router_buckets does not define"))
                    if not _is_list(steps):
                        errs.append(InventoryError(host, f, f"must be a list of {{over_tokens, route}}, got {_tname(steps)}"))
                        continue
                    for i, st in enumerate(steps):
                        if not isinstance(st, Mapping):
                            errs.append(InventoryError(host, f"{f}[{i}]", "must be a mapping {over_tokens, route}"))
                            continue
                        if not (_is_int(st.get("over_tokens")) and st["over_tokens"] >= 0):
                            errs.append(InventoryError(host, f"{f}[{i}].over_tokens", f"must be an integer >= 0, got {_fmt(st.get('over_tokens'))}"))
                        r = st.get("route")
                        if not _is_str(r):
                            errs.append(InventoryError(host, f"{f}[{i}].route", "is required"))
                        elif routes and r not in routes and r not in clouds:
                            errs.append(InventoryError(host, f"{f}[{i}].route", f"promotion names route {r!r}, which no engine serves"))
        emb = view.get("router_embeddings_route")
        if emb is not None and emb != "":
            if not _is_str(emb):
                errs.append(InventoryError(host, "router_embeddings_route", f"must be a route name, got {_tname(emb)}"))
            elif routes and emb not in routes:
                errs.append(InventoryError(host, "router_embeddings_route", f"names route {emb!r}, which no engine serves"))
            elif routes and routes[emb][2].get("embeddings") is not True:
                errs.append(InventoryError(host, "router_embeddings_route", f"route {emb!r} does not set embeddings: true"))
    return errs


def check_lxc(model: Mapping[str, Any]) -> list[InventoryError]:
    errs: list[InventoryError] = []
    hostvars = model.get("hostvars") or {}
    vmids: dict[int, str] = {}
    for host in _members(model, "lxc_guests"):
        lxc = (hostvars.get(host) or {}).get("lxc")
        if not isinstance(lxc, Mapping):
            errs.append(InventoryError(host, "lxc", f"is required on an lxc_guests host (a mapping {{vmid, node, ...}}), got {_tname(lxc)}"))
            continue
        vmid = lxc.get("vmid")
        if not (_is_int(vmid) and 100 <= vmid <= 999999999):
            errs.append(InventoryError(host, "lxc.vmid", f"must be an integer 100-999999999, got {_fmt(vmid)}"))
        elif vmid in vmids:
            errs.append(InventoryError(host, "lxc.vmid", f"vmid {vmid} is also used by host {vmids[vmid]}"))
        else:
            vmids[vmid] = host
        for key in ("cores", "memory_mb", "disk_gb"):
            if key in lxc and not (_is_int(lxc[key]) and lxc[key] > 0):
                errs.append(InventoryError(host, f"lxc.{key}", f"must be an integer > 0, got {_fmt(lxc[key])}"))
        for key in ("unprivileged", "nesting", "onboot"):
            if key in lxc and not isinstance(lxc[key], bool):
                errs.append(InventoryError(host, f"lxc.{key}", f"must be true or false, got {_fmt(lxc[key])}"))
        if not _is_str(lxc.get("node")):
            errs.append(InventoryError(host, "lxc.node", "is required (the Proxmox node name)"))
    return errs


def check_secrets(model: Mapping[str, Any]) -> list[InventoryError]:
    """Soft check: vault_engine_api_keys (when present and readable) only names served routes."""
    routes, _ = _routes(model)
    errs: list[InventoryError] = []
    reported = set()
    for host, hv in (model.get("hostvars") or {}).items():
        keys = (hv or {}).get("vault_engine_api_keys")
        if not isinstance(keys, Mapping) or not routes:
            continue
        for r in keys:
            if r not in routes and r not in reported:
                reported.add(r)
                errs.append(InventoryError(host, f"vault_engine_api_keys.{r}", f"names route {r!r}, which no engine serves"))
    errs += _cloud_secrets(model)
    return errs


def _cloud_secrets(model: Mapping[str, Any]) -> list[InventoryError]:
    """issue 18: vault_cloud_api_keys (when readable) names cloud routes only, and every cloud route has a key."""
    from router_app.cloud.inventory import cloud_key_errors  # noqa: PLC0415 - next to router_inventory
    errs: list[InventoryError] = []
    for host, view in _router_view(model):
        clouds = view.get("router_cloud_routes")
        if not isinstance(clouds, Mapping) or not clouds:
            continue
        hv = (model.get("hostvars") or {}).get(host) or {}
        keys = hv.get("vault_cloud_api_keys")
        if keys is None:      # the site's (group_vars/all) key set, seen from any host
            keys = next((v.get("vault_cloud_api_keys") for v in (model.get("hostvars") or {}).values()
                         if isinstance(v, Mapping) and v.get("vault_cloud_api_keys") is not None), None)
        if not isinstance(keys, Mapping):
            continue      # not readable here (no vault password): the router role refuses a missing key
        errs += [InventoryError(host, f, reason) for f, reason in cloud_key_errors(clouds, keys)]
        errs += [InventoryError(host, f"router_cloud_routes.{r}", f"cloud route {r!r} has no key in vault_cloud_api_keys")
                 for r in clouds if r not in keys]
    return errs


def router_configs(model: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Compile the router config for each distinct gateway view: [(gateway host, config dict)]."""
    if router_inventory is None:
        return []
    hostvars = model.get("hostvars") or {}
    gpu_hosts = {h: hostvars.get(h) or {} for h in _members(model, "gpu_nodes")}
    out = []
    for host, view in _router_view(model):
        buckets = view.get("router_buckets")
        proms = view.get("router_size_promotions")
        tie = view.get("router_tie_break")
        out.append((host, router_inventory.compile_router_config(
            gpu_hosts,
            router_port=view.get("homelab_router_port") or router_inventory.DEFAULT_ROUTER_PORT,
            buckets=buckets if isinstance(buckets, Mapping) else None,
            tie_break=tie if _is_list(tie) else None,
            size_promotions=proms if isinstance(proms, Mapping) else None,
            embeddings_route=view.get("router_embeddings_route") or None if _is_str(view.get("router_embeddings_route")) else None,
            # issue 11: passed as given (None: the router's default); the router's schema reports bad shapes
            fail_closed_buckets=view.get("router_structured_fail_closed_buckets"),
            route_unknown_models=view.get("router_route_unknown_models"),
            cors_allow_origins=view.get("router_cors_allow_origins"),
            cloud_routes=view.get("router_cloud_routes") if isinstance(view.get("router_cloud_routes"), Mapping) else None,
            cloud=view.get("router_cloud") if isinstance(view.get("router_cloud"), Mapping) else None,
        )))
    return out


# (router message fragment, matching inventory-check fragment): one rule, reported once.
_CATEGORIES = (
    ("no vision", "no vision"),
    ("unknown route", "no engine serves"),
    ("terminal", "terminal"),
)


def check_router_schema(model: Mapping[str, Any], known: list[InventoryError]) -> list[InventoryError]:
    """Validate the compiled router config with the router's own schema; skip what the inventory checks reported."""
    if router_inventory is None:
        return []
    hostvars = model.get("hostvars") or {}
    owners = router_inventory.route_owners({h: hostvars.get(h) or {} for h in _members(model, "gpu_nodes")})
    errs: list[InventoryError] = []
    cycle_known = any("fallback cycle" in k.reason for k in known)

    def related(a: str, b: str) -> bool:
        return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))

    def owner_field(field: str) -> str:  # engines[0].spill.image -> engines[0]; router_buckets.x.route -> router_buckets.x
        m = re.match(r"^(engines\[\d+\]|router_\w+\.[^.\[]+|[^.\[]+)", field)
        return m.group(1) if m else field

    for host, config in router_configs(model):
        mapped = router_inventory.validate_router_config(config, owners, host)
        if mapped is None:
            return []
        for h, field, reason in mapped:
            dup = any(k.host == h and related(k.field, field) for k in known + errs)
            if cycle_known and "cycle" in reason:
                dup = True
            # the same rule seen from another key of the same engine/bucket (e.g. failover vs spill)
            for category, local_mark in _CATEGORIES:
                if category in reason and any(k.host == h and owner_field(k.field) == owner_field(field)
                                              and local_mark in k.reason for k in known):
                    dup = True
            if not dup:
                errs.append(InventoryError(h, field, f"router schema: {reason}"))
    return errs


def check_role_rules(model: Mapping[str, Any], known: list[InventoryError]) -> list[InventoryError]:
    """The roles' own rules (plugins/filter/homelab_rules.py, also run by every preflight), for each host
    and each role site.yml gives it; a problem already reported on the same host and field is not repeated."""
    errs: list[InventoryError] = []
    for host, field, reason in homelab_site_roles.site_role_problems(model):
        engine_field = "_engines[" in field
        if any(k.host == host and (k.field == field or (engine_field and k.field.startswith("engines")))
               for k in known):
            continue
        errs.append(InventoryError(host, field, reason))
    return errs


def check_model(model: Mapping[str, Any], settings: Optional[Mapping[str, Any]] = None) -> list[InventoryError]:
    """Run every check and return all errors (sorted by host, then field)."""
    s = _settings(settings)
    errs: list[InventoryError] = list(model.get("errors") or [])
    errs += check_vlans(model)
    errs += check_addresses(model)
    errs += check_engine_fields(model, s)
    errs += check_fit(model, s)
    errs += check_ports(model, s)
    errs += check_routes(model)
    errs += check_router_settings(model)
    errs += check_lxc(model)
    errs += check_secrets(model)
    if s.get("router_schema"):
        errs += check_router_schema(model, errs)
    errs += check_role_rules(model, errs)
    unique = list(dict.fromkeys(errs))
    return sorted(unique, key=lambda e: (e.host, e.field))


# ----------------------------------------------------------------------------------------------------------------
# Ansible side: turning hostvars into a model

class _UndefinedValue(Exception):
    pass


def _plain(value: Any) -> Any:
    """Deep-convert to plain Python; an undefined value anywhere inside raises _UndefinedValue."""
    if _JinjaUndefined is not None and isinstance(value, _JinjaUndefined):
        try:
            message = str(value._undefined_message)
        except Exception:  # pragma: no cover - defensive
            message = "undefined variable"
        raise _UndefinedValue(message)
    if isinstance(value, Mapping):
        return {str(k): _plain(value[k]) for k in value}
    if _is_list(value):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool):
        return value if value is None else bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _read(source: Any, key: str, host: str, errors: list[InventoryError]) -> Any:
    try:
        if key not in source:
            return _MISSING
        return _plain(source[key])
    except Exception as exc:  # undefined variables, template errors, vault without a password
        if key.startswith("vault_") or (key in homelab_site_roles.ALL_KEYS and key not in HOST_KEYS):
            return _MISSING  # a secret that cannot be read, or a role variable templated on role defaults:
            # the role rules then see the role's default and report what is missing
        errors.append(InventoryError(host, key, f"cannot be evaluated: {exc}"))
        return _MISSING


def gather_model(hostvars: Any, groups: Mapping[str, Any], site_vars: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Build the checks' model from Ansible's ``hostvars`` and ``groups`` (only the variables the checks read)."""
    errors: list[InventoryError] = []
    groups_plain = {str(g): [str(h) for h in (hs or [])] for g, hs in dict(groups).items()}
    gateways = set(groups_plain.get("gateway", []))
    model_hv: dict[str, dict[str, Any]] = {}
    for host in groups_plain.get("all", []):
        src = hostvars[host]
        hv: dict[str, Any] = {}
        for key in HOST_KEYS + homelab_site_roles.ALL_KEYS + (GATEWAY_KEYS if host in gateways else ()):
            val = _read(src, key, host, errors)
            if val is not _MISSING:
                hv[key] = val
        model_hv[host] = hv
    site: dict[str, Any] = {}
    for key in SITE_KEYS:
        val = _read(site_vars or {}, key, "all", errors)
        if val is not _MISSING and val is not None:
            site[key] = val
    return {"groups": groups_plain, "hostvars": model_hv, "site": site, "errors": errors}


def inventory_errors(hostvars: Any, groups: Mapping[str, Any], site_vars: Optional[Mapping[str, Any]] = None,
                     settings: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Filter: every inventory error as ``"<host>: <field>: <reason>"``."""
    return [str(e) for e in check_model(gather_model(hostvars, groups, site_vars), settings)]


def router_config(hostvars: Any, groups: Mapping[str, Any], site_vars: Optional[Mapping[str, Any]] = None,
                  gateway: Optional[str] = None) -> dict[str, Any]:
    """Filter: the router config compiled for ``gateway`` (default: the first gateway host)."""
    configs = router_configs(gather_model(hostvars, groups, site_vars))
    if not configs:
        return {}
    for host, cfg in configs:
        if host == gateway:
            return cfg
    return configs[0][1]


class FilterModule:
    """homelab inventory filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "homelab_inventory_errors": inventory_errors,
            "homelab_router_config": router_config,
        }
