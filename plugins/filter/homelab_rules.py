"""homelab-ai: the per-role rules, ONE implementation shared by validation and by every role's preflight.

Each rule takes the variables a role resolves for one host (a plain mapping) and returns a list of
``(field, reason)`` problems. Two callers:

* a role's ``tasks/preflight.yml`` passes its resolved variables through the filter
  ``homelab_role_errors(role, inventory_hostname)`` and fails on any line it returns;
* ``roles/validate_inventory`` (``homelab_site_roles.site_role_errors``) rebuilds the same variables
  from the inventory (the role defaults mirrored in ``homelab_site_roles.ROLE_DEFAULTS``) for every
  host a play of site.yml gives the role to, and reports the same problems before anything runs.

So whatever validation accepts, the preflights accept (tests/inventory/test_preflight_agreement.py).
Ansible finds this file through ``filter_plugins = plugins/filter`` in ansible.cfg (Molecule: the
same path in .config/molecule/config.yml).
"""
from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable


def _load_sibling(name: str):
    """A module next to this file (Ansible loads filter files without a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_values = _load_sibling("homelab_values")
_engine_rules = _load_sibling("homelab_engine_rules")
_ha_rules = _load_sibling("homelab_ha_rules")
ROUTE_NAME_RE, ROUTE_NAME_HELP, Problem = _values.ROUTE_NAME_RE, _values.ROUTE_NAME_HELP, _values.Problem
_int, _num, _port, _text, _list, _bool, _required = (_values._int, _values._num, _values._port, _values._text,
                                                     _values._list, _values._bool, _values._required)
is_network, is_wireguard_key = _values.is_network, _values.is_wireguard_key
rules_vllm, rules_llama_server = _engine_rules.rules_vllm, _engine_rules.rules_llama_server
rules_ollama, rules_lmstudio = _engine_rules.rules_ollama, _engine_rules.rules_lmstudio
_agent_files = None


def _files():
    """router_app/agent/files.py (stdlib only): the agent's own path rules, so validation refuses what it refuses."""
    global _agent_files
    if _agent_files is None:
        path = Path(__file__).resolve().parents[2] / "router_app" / "agent" / "files.py"
        spec = importlib.util.spec_from_file_location("homelab_agent_files_rules", path)
        _agent_files = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_agent_files)
    return _agent_files


INFRA_FORBIDDEN = ("/root", "/home", "/proc", "/sys", "/dev", "/run/secrets")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# ------------------------------------------------------------------------------------------------
# the rules, one function per role

def rules_common(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if not _port(v.get("common_ssh_port")):
        out.append(("common_ssh_port", f"must be a port 1-65535, got {v.get('common_ssh_port')!r}"))
    if not _bool(v.get("common_nftables_enabled", True)):
        return out
    cidrs = v.get("common_nftables_management_cidrs")
    if not _list(cidrs) or not cidrs:
        out.append(("common_nftables_management_cidrs",
                    "is required while common_nftables_enabled is true: the default-deny firewall would lock SSH "
                    "out; list the management network(s) Ansible connects from (e.g. the mgmt VLAN's subnet)"))
    else:
        out += [(f"common_nftables_management_cidrs[{i}]", f"{c!r} is not an IPv4/IPv6 address or CIDR")
                for i, c in enumerate(cidrs) if not is_network(c)]
    allow = v.get("common_nftables_allow") or []
    for i, a in enumerate(allow if _list(allow) else [allow]):
        f = f"common_nftables_allow[{i}]"
        if not isinstance(a, Mapping):
            out.append((f, "must be a mapping {port, proto, from}"))
            continue
        parts = str(a.get("port", "")).split("-")
        if not (1 <= len(parts) <= 2 and all(_port(p) for p in parts)):
            out.append((f"{f}.port", f"must be a port 1-65535 or a range 'a-b', got {a.get('port')!r}"))
        if a.get("proto", "tcp") not in ("tcp", "udp"):
            out.append((f"{f}.proto", f"must be tcp or udp, got {a.get('proto')!r}"))
        src = a.get("from")
        if not _list(src) or not src:
            out.append((f"{f}.from", "must be a non-empty list of CIDRs"))
        else:
            out += [(f"{f}.from", f"{c!r} is not an IPv4/IPv6 address or CIDR") for c in src if not is_network(c)]
    return out


def rules_engine_lockdown(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if v.get("engine_lockdown_action") not in ("reject", "drop"):
        out.append(("engine_lockdown_action", f"must be reject or drop, got {v.get('engine_lockdown_action')!r}"))
    if v.get("engine_lockdown_common_chain") not in ("auto", "yes", "no"):
        out.append(("engine_lockdown_common_chain", "must be auto, yes or no"))
    ports = list(v.get("engine_lockdown_ports") or []) + list(v.get("engine_lockdown_extra_ports") or [])
    out += [("engine_lockdown_extra_ports", f"{p!r} is not a port 1-65535") for p in ports if not _port(p)]
    sources = v.get("engine_lockdown_allowed_sources") or []
    out += [("engine_lockdown_allowed_sources", f"{s!r} is not an IPv4/IPv6 address or CIDR")
            for s in sources if not is_network(s)]
    if ports and not sources:
        out.append(("engine_lockdown_allowed_sources",
                    f"engine ports {sorted(map(str, ports))} would be closed to everyone: put the router host in "
                    "group gateway (with homelab_address) or set engine_lockdown_extra_sources"))
    return out


def rules_nvidia_driver(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if not re.fullmatch(r"[0-9]{3}", str(v.get("nvidia_driver_branch"))):
        out.append(("nvidia_driver_branch", f"must be a 3-digit driver branch, got {v.get('nvidia_driver_branch')!r}"))
    if str(v.get("nvidia_driver_install")).lower() not in ("auto", "yes", "no", "true", "false"):
        out.append(("nvidia_driver_install", "must be auto, yes or no"))
    if str(v.get("nvidia_driver_open", False)).lower() not in ("true", "false", "yes", "no"):
        out.append(("nvidia_driver_open",
                    f"must be true or false (open kernel modules), got {v.get('nvidia_driver_open')!r}"))
    for i, g in enumerate(v.get("nvidia_driver_expected_gpus") or []):
        if not (isinstance(g, Mapping) and _num(g.get("vram_gib")) is not None and not isinstance(g.get("vram_gib"), str)):
            out.append((f"nvidia_driver_expected_gpus[{i}].vram_gib", "must be a number (GiB)"))
    tol = _num(v.get("nvidia_driver_vram_tolerance"))
    if tol is None or not 0 <= tol < 1:
        out.append(("nvidia_driver_vram_tolerance", "must be a fraction in [0, 1)"))
    return out


def rules_router(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if not (isinstance(v.get("router_admin_key"), str) and len(v["router_admin_key"]) >= 16):
        out.append(("router_admin_key", "is required, at least 16 characters: set vault_router_admin_key in the "
                                        "vault (see group_vars/all/vault.yml.example)"))
    if not _port(v.get("router_listen_port")):
        out.append(("router_listen_port", f"must be a port 1-65535, got {v.get('router_listen_port')!r}"))
    return out


def rules_caddy(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    http, https = v.get("caddy_http_port"), v.get("caddy_https_port")
    for key, val in (("caddy_http_port", http), ("caddy_https_port", https)):
        if not _port(val):
            out.append((key, f"must be a port 1-65535, got {val!r}"))
    if _port(http) and _int(http) == _int(https):
        out.append(("caddy_https_port", "must differ from caddy_http_port"))
    if not v.get("caddy_site_addresses"):
        out.append(("caddy_site_addresses", "must not be empty"))
    allowed = v.get("caddy_allowed") or []
    if not allowed:
        out.append(("caddy_allowed_cidrs", "must not be empty (the networks allowed through Caddy)"))
    out += [("caddy_allowed_cidrs", f"{c!r} is not an IPv4/IPv6 CIDR") for c in allowed if not is_network(c)]
    if v.get("caddy_tls_mode") == "acme":
        out += _required(v, "caddy_acme_email", "caddy_tls_mode acme needs an account email")
    if "caddy_request_body_max_bytes" in v and v.get("caddy_buffer_requests", True):
        limit = v.get("caddy_request_body_max_bytes")
        if isinstance(limit, bool) or (_int(limit) or 0) < 1048576:
            out.append(("caddy_request_body_max_bytes", "must be an integer >= 1048576 (request bodies are buffered "
                                                        f"whole up to it; the router's limit is 32 MiB), got {limit!r}"))
    return out


def rules_netdata(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if not _port(v.get("netdata_port")):
        out.append(("netdata_port", f"must be a port 1-65535, got {v.get('netdata_port')!r}"))
    name = v.get("netdata_hostname")
    if not _text(name) or re.search(r"\s", name):
        out.append(("netdata_hostname", "must be a non-empty name without spaces"))
    if (_int(v.get("netdata_update_every")) or 0) < 1:
        out.append(("netdata_update_every", "must be an integer >= 1"))
    key = v.get("netdata_stream_api_key")
    if not (isinstance(key, str) and UUID_RE.match(key)):
        out.append(("netdata_stream_api_key", "is required, a UUID (`uuidgen`): set vault_netdata_stream_api_key in "
                                              "the vault (the value itself is not shown)"))
    if v.get("netdata_role") == "child" and not v.get("netdata_parent_destinations"):
        out.append(("netdata_parent_destinations", "a Netdata child needs a parent: put a host with homelab_address "
                                                   "in group netdata_parent, or set netdata_parent_destinations"))
    bad = [x for x in list(v.get("netdata_allowed_children") or []) + list(v.get("netdata_web_allow_from") or [])
           if re.search(r"\s", str(x))]
    out += [("netdata_web_allow_from", f"{x!r} must not contain spaces") for x in bad]
    return out


def rules_wireguard(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if not re.fullmatch(r"[A-Za-z0-9_=+.-]{1,15}", str(v.get("wireguard_interface"))):
        out.append(("wireguard_interface", "must be 1-15 characters of [A-Za-z0-9_=+.-]"))
    addr = str(v.get("wireguard_address", ""))
    try:
        ipaddress.ip_interface(addr)
        ok = "/" in addr
    except ValueError:
        ok = False
    if not ok:
        out.append(("wireguard_address", f"must be an address with a prefix such as 10.99.0.1/24, got {addr!r}"))
    if not _port(v.get("wireguard_listen_port")):
        out.append(("wireguard_listen_port", f"must be a port 1-65535, got {v.get('wireguard_listen_port')!r}"))
    mtu = _int(v.get("wireguard_mtu"))
    if mtu is None or not (mtu == 0 or 1280 <= mtu <= 9000):
        out.append(("wireguard_mtu", "must be 0 (automatic) or 1280-9000"))
    names, keys = set(), set()
    for i, p in enumerate(v.get("wireguard_peers") or []):
        f = f"wireguard_peers[{i}]"
        if not isinstance(p, Mapping):
            out.append((f, "must be a mapping {name, public_key, allowed_ips}"))
            continue
        if not (isinstance(p.get("name"), str) and re.fullmatch(r"[A-Za-z0-9_.-]+", p["name"])):
            out.append((f"{f}.name", "is required: letters, digits, '.', '_' and '-'"))
        elif p["name"] in names:
            out.append((f"{f}.name", f"peer name {p['name']!r} is used twice"))
        names.add(p.get("name"))
        if not is_wireguard_key(p.get("public_key")):
            out.append((f"{f}.public_key", "is required: base64 of 32 bytes, as printed by `wg pubkey`"))
        elif p["public_key"] in keys:
            out.append((f"{f}.public_key", "this public key is used by another peer"))
        keys.add(p.get("public_key"))
        ips = p.get("allowed_ips")
        ips = [x.strip() for x in ips.split(",") if x.strip()] if isinstance(ips, str) else list(ips or [])
        if not ips or not all(is_network(x) for x in ips):
            out.append((f"{f}.allowed_ips", "is required: CIDRs such as 10.99.0.10/32"))
        ka = p.get("persistent_keepalive")
        if ka is not None and not (_int(ka) is not None and 0 <= _int(ka) <= 65535):
            out.append((f"{f}.persistent_keepalive", "must be 0-65535 seconds"))
    return out


def rules_opnsense_vlans(v: Mapping[str, Any]) -> list[Problem]:
    why = "put vault_opnsense_api_key / vault_opnsense_api_secret in the vault (System > Access > Users > API keys)"
    out = _required(v, "opnsense_vlans_api_key", why) + _required(v, "opnsense_vlans_api_secret", why)
    if not str(v.get("opnsense_vlans_api_url", "")).startswith("https://"):
        out.append(("opnsense_vlans_api_url", "must be an https:// URL"))
    seen_names, seen_tags = set(), set()
    for i, vl in enumerate(v.get("opnsense_vlans_vlans") or []):
        if not isinstance(vl, Mapping):
            continue  # reported by the VLAN checks of validation
        for key in ("name", "id", "subnet", "parent_if"):
            if vl.get(key) in (None, ""):
                out.append((f"homelab_vlans[{i}].{key}", "is required by the network layer (opnsense_vlans)"))
        if vl.get("name") in seen_names:
            out.append((f"homelab_vlans[{i}].name", "is not unique"))
        tag = (vl.get("parent_if"), _int(vl.get("id")))
        if tag in seen_tags:
            out.append((f"homelab_vlans[{i}].id", f"parent interface {tag[0]} already carries VLAN tag {tag[1]}"))
        seen_names.add(vl.get("name"))
        seen_tags.add(tag)
    return out


def rules_proxmox_lxc(v: Mapping[str, Any]) -> list[Problem]:
    why = "put vault_proxmox_token_id (USER@REALM!TOKENID) and vault_proxmox_token_secret in the vault"
    return _required(v, "proxmox_lxc_api_token_id", why) + _required(v, "proxmox_lxc_api_token_secret", why)


def _loopback_url(url: Any) -> bool:
    m = re.fullmatch(r"https?://(\[[^\]]+\]|[^/:\s]+)(:\d+)?/v1", str(url))
    return bool(m) and m.group(1).lower() in ("127.0.0.1", "localhost", "[::1]")


def rules_open_webui(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    key = v.get("open_webui_router_api_key")
    if key is not None and not isinstance(key, str):
        out.append(("open_webui_router_api_key", f"must be a string, got {type(key).__name__}"))
    elif not (key or "").strip() and not _loopback_url(v.get("open_webui_router_url")):
        out.append(("open_webui_router_api_key", "is required when open_webui_enabled and the router is on another "
                    f"host (open_webui_router_url {v.get('open_webui_router_url')!r} is not loopback): create "
                    "the key there with `homelab-router keys create --app open-webui` and set "
                    "vault_open_webui_router_api_key; with the router on this host (127.0.0.1) leave it empty: "
                    "the role ensures the key itself"))
    if not re.fullmatch(r"https?://[^/\s]+/v1", str(v.get("open_webui_router_url"))):
        out.append(("open_webui_router_url", f"must be the router's base URL ending in /v1, got "
                                             f"{v.get('open_webui_router_url')!r}"))
    if not _port(v.get("open_webui_listen_port")):
        out.append(("open_webui_listen_port", f"must be a port 1-65535, got {v.get('open_webui_listen_port')!r}"))
    return out


def rules_homelab_agent(v: Mapping[str, Any]) -> list[Problem]:
    paths = v.get("homelab_agent_infra_paths")
    if not isinstance(paths, list):
        return [("homelab_agent_infra_paths", f"must be a list of absolute paths, got {type(paths).__name__}")]
    out: list[Problem] = []
    files = _files()
    for i, p in enumerate(paths):
        field = f"homelab_agent_infra_paths[{i}]"
        why = files.path_problem(p)
        if why:
            out.append((field, why))
        elif p == "/" or any(p == f or p.startswith(f + "/") for f in INFRA_FORBIDDEN):
            out.append((field, f"{p!r} is never allowlisted (/, {', '.join(INFRA_FORBIDDEN)})"))
        elif files.secret_name(p):
            out.append((field, f"{p!r} looks like a secret (*.env, keys, tokens, shadow); secrets are never served"))
    return out


RULES: dict[str, Callable[[Mapping[str, Any]], list[Problem]]] = {
    "common": rules_common, "vllm": rules_vllm, "llama_server": rules_llama_server, "ollama": rules_ollama,
    "lmstudio": rules_lmstudio, "engine_lockdown": rules_engine_lockdown, "nvidia_driver": rules_nvidia_driver,
    "router": rules_router, "caddy": rules_caddy, "netdata": rules_netdata, "wireguard": rules_wireguard,
    "opnsense_vlans": rules_opnsense_vlans, "proxmox_lxc": rules_proxmox_lxc, "open_webui": rules_open_webui,
    "mosquitto": _ha_rules.rules_mosquitto, "homelab_ha_runtime": _ha_rules.rules_homelab_ha_runtime,
    "ha_bridge": _ha_rules.rules_ha_bridge, "vision_notifier": _ha_rules.rules_vision_notifier,
    "homelab_agent": rules_homelab_agent,
}


def role_problems(variables: Mapping[str, Any], role: str) -> list[Problem]:
    if role not in RULES:
        raise ValueError(f"homelab_role_errors: no rules for role {role!r} (known: {', '.join(sorted(RULES))})")
    return RULES[role](variables or {})


def role_errors(variables: Mapping[str, Any], role: str, host: str) -> list[str]:
    """Filter ``homelab_role_errors``: every problem as ``"<host>: <field>: <reason>"``."""
    return [f"{host}: {field}: {reason}" for field, reason in role_problems(variables, role)]


class FilterModule:
    """homelab role rules."""

    def filters(self) -> dict[str, Any]:
        return {"homelab_role_errors": role_errors}
