"""Validation's side of the shared role rules (homelab_rules.py): which roles site.yml gives each host,
and the variables each role would resolve there, rebuilt from the inventory.

Literal role defaults are read from ``roles/<role>/defaults/main.yml`` itself; the few templated defaults
the rules depend on are computed in ``_derived`` the way the role's Jinja does (keep them in step:
tests/inventory/test_preflight_agreement.py runs the real preflights against validation).
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_rules():
    if "homelab_rules" not in sys.modules:
        spec = importlib.util.spec_from_file_location("homelab_rules", Path(__file__).with_name("homelab_rules.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["homelab_rules"] = module
        spec.loader.exec_module(module)
    return sys.modules["homelab_rules"]


rules = _load_rules()


def _load_network_rules():
    if "homelab_network_rules" not in sys.modules:
        spec = importlib.util.spec_from_file_location("homelab_network_rules",
                                                      Path(__file__).with_name("homelab_network_rules.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["homelab_network_rules"] = module
        spec.loader.exec_module(module)
    return sys.modules["homelab_network_rules"]


network_rules = _load_network_rules()
ha_rules = sys.modules["homelab_ha_rules"]  # loaded by homelab_rules

# The variables each role's rules read (plus those their defaults derive from).
ROLE_KEYS: dict[str, tuple[str, ...]] = {
    "common": ("common_ssh_port", "common_nftables_enabled", "common_nftables_management_cidrs",
               "common_nftables_allow"),
    "vllm": ("vllm_engines", "vllm_version", "vllm_gpus"),
    "llama_server": ("llama_server_engines", "llama_server_gpus", "llama_server_install_method", "llama_server_source_type",
                     "llama_server_cuda", "llama_server_binary_src", "llama_server_sdist_checksum",
                     "llama_server_allow_vision_without_mmproj"),
    "ollama": ("ollama_engines", "ollama_port", "ollama_archive_checksum", "ollama_keep_alive", "ollama_gpus",
               "ollama_max_loaded_models", "ollama_num_parallel", "ollama_max_queue"),
    "lmstudio": ("lmstudio_engines", "lmstudio_port", "lmstudio_archive_url", "lmstudio_archive_checksum"),
    "engine_lockdown": ("engine_lockdown_ports", "engine_lockdown_extra_ports", "engine_lockdown_allowed_sources",
                        "engine_lockdown_extra_sources", "engine_lockdown_action", "engine_lockdown_common_chain",
                        "engine_lockdown_router_groups", "engine_lockdown_monitor_groups"),
    "nvidia_driver": ("nvidia_driver_branch", "nvidia_driver_install", "nvidia_driver_open",
                      "nvidia_driver_expected_gpus", "nvidia_driver_vram_tolerance"),
    "router": ("router_admin_key", "router_listen_port"),
    "caddy": ("caddy_http_port", "caddy_https_port", "caddy_site_addresses", "caddy_allowed_cidrs",
              "caddy_allowed_cidrs_extra", "caddy_tls_mode", "caddy_acme_email", "caddy_buffer_requests",
              "caddy_request_body_max_bytes"),
    "netdata": ("netdata_port", "netdata_hostname", "netdata_update_every", "netdata_stream_api_key", "netdata_role",
                "netdata_parent_destinations", "netdata_allowed_children", "netdata_web_allow_from"),
    "wireguard": ("wireguard_interface", "wireguard_address", "wireguard_listen_port", "wireguard_mtu",
                  "wireguard_peers"),
    "opnsense_vlans": ("opnsense_vlans_api_key", "opnsense_vlans_api_secret", "opnsense_vlans_api_url",
                       "opnsense_vlans_vlans"),
    "proxmox_lxc": ("proxmox_lxc_api_token_id", "proxmox_lxc_api_token_secret"),
    "open_webui": ("open_webui_router_api_key", "open_webui_router_url", "open_webui_listen_port"),
    "mosquitto": ("mosquitto_users", "mosquitto_passwords", "mosquitto_port", "mosquitto_bind_addresses",
                  "mosquitto_tls_enabled", "mosquitto_tls_port", "mosquitto_tls_cert_file", "mosquitto_tls_key_file",
                  "mosquitto_firewall_enabled", "mosquitto_firewall_sources", "mosquitto_firewall_extra_sources"),
    "homelab_ha_runtime": ("homelab_ha_runtime_requirements", "homelab_ha_runtime_user", "homelab_ha_runtime_group",
                           "homelab_ha_runtime_dir"),
    "ha_bridge": ("ha_bridge_poll_interval_s", "ha_bridge_expire_after_s", "ha_bridge_netdata_url", "ha_bridge_hosts",
                  "ha_bridge_mqtt_port", "ha_bridge_mqtt_username", "ha_bridge_mqtt_password"),
    "vision_notifier": ("vision_notifier_router_url", "vision_notifier_mqtt_password", "vision_notifier_mqtt_username",
                        "vision_notifier_mqtt_port", "vision_notifier_listen_host", "vision_notifier_listen_port",
                        "vision_notifier_drop_confidence", "vision_notifier_router_timeout_s",
                        "vision_notifier_channel_attempts", "vision_notifier_workers", "vision_notifier_dedup_window_s",
                        "vision_notifier_dedup_id_ttl_s", "vision_notifier_ingest_token",
                        "vision_notifier_stage1_model", "vision_notifier_stage2_model"),
    "homelab_agent": ("homelab_agent_infra_paths",),
}
# Inventory variables the derived defaults read (besides homelab_address, engines, gpus).
SOURCE_KEYS = ("homelab_mac", "vault_router_admin_key", "vault_netdata_stream_api_key", "vault_opnsense_api_key",
               "vault_opnsense_api_secret", "vault_proxmox_token_id", "vault_proxmox_token_secret",
               "vault_mosquitto_passwords", "vault_vision_notifier_ingest_token", "homelab_client_cidrs",
               "router_listen_port", "open_webui_enabled")
ALL_KEYS = tuple(k for keys in ROLE_KEYS.values() for k in keys) + SOURCE_KEYS

RUNTIME_ROLES = ("vllm", "ollama", "llama_server", "lmstudio")


@lru_cache(maxsize=None)
def literal_defaults(role: str) -> dict[str, Any]:
    """The role's defaults/main.yml values that are not templates."""
    data = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    return {k: v for k, v in data.items() if not (isinstance(v, str) and "{{" in v)}


def roles_for_host(groups: Mapping[str, list[str]], host: str, hv: Mapping[str, Any]) -> list[str]:
    """The roles whose preflight a site.yml run gives ``host`` (mirrors playbooks/*.yml)."""
    def member(g: str) -> bool:
        return host in (groups.get(g) or [])

    out: list[str] = []
    if member("firewall"):
        out.append("opnsense_vlans")
    if member("proxmox"):
        out.append("proxmox_lxc")
    runtimes = {e.get("runtime") for e in (hv.get("engines") or []) if isinstance(e, Mapping)}
    if member("gpu_nodes") and not member("windows"):
        out += ["common", "nvidia_driver"] + [r for r in RUNTIME_ROLES if r in runtimes] + ["engine_lockdown"]
    if member("windows"):
        out.append("lmstudio")
    if member("gateway"):
        out += [r for r in ("common", "router", "caddy") if r not in out]
        if str(hv.get("open_webui_enabled", False)).strip().lower() in ("true", "yes", "1", "on"):
            out.append("open_webui")
    if member("netdata"):
        out.append("netdata")
    if member("wireguard"):
        out.append("wireguard")
    if member("home_automation"):  # playbooks/home_automation.yml (homelab_ha_runtime: ha_bridge's dependency)
        out += ["mosquitto", "homelab_ha_runtime", "ha_bridge", "vision_notifier"]
    if member("homelab_agents"):     # playbooks/agents.yml
        out.append("homelab_agent")
    return out


def _addresses(model: Mapping[str, Any], group_names: list[str]) -> list[str]:
    groups, hostvars = model.get("groups") or {}, model.get("hostvars") or {}
    out: list[str] = []
    for g in group_names:
        for h in groups.get(g) or []:
            a = (hostvars.get(h) or {}).get("homelab_address")
            if a and str(a) not in out:
                out.append(str(a))
    return out


def _derived(role: str, host: str, v: dict[str, Any], hv: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    """Fill the templated defaults of ``role`` that the inventory did not set (in place)."""
    groups, site = model.get("groups") or {}, model.get("site") or {}
    engines = [e for e in (hv.get("engines") or []) if isinstance(e, Mapping)]

    def default(key: str, value: Any) -> None:
        v.setdefault(key, value)

    if role in RUNTIME_ROLES:
        mine = [e for e in engines if e.get("runtime") == role]
        default(f"{role}_engines", mine)
        default(f"{role}_gpus", hv.get("gpus") if isinstance(hv.get("gpus"), list) else None)
        first = (v[f"{role}_engines"] or [{}])[0]
        if role in ("ollama", "lmstudio"):
            default(f"{role}_port", first.get("port", 11434 if role == "ollama" else 1234) if isinstance(first, Mapping) else None)
        if role == "ollama":
            default("ollama_archive_checksum", "sha256:(release checksum file)")
        v["windows"] = host in (groups.get("windows") or [])
    elif role == "engine_lockdown":
        default("engine_lockdown_ports", sorted({e["port"] for e in engines if e.get("port") is not None}, key=str))
        default("engine_lockdown_allowed_sources",
                _addresses(model, list(v.get("engine_lockdown_router_groups") or [])
                           + list(v.get("engine_lockdown_monitor_groups") or []))
                + list(v.get("engine_lockdown_extra_sources") or []))
    elif role == "nvidia_driver":
        default("nvidia_driver_expected_gpus", hv.get("gpus") or [])
    elif role == "router":
        default("router_admin_key", hv.get("vault_router_admin_key") or "")
        default("router_listen_port", hv.get("homelab_router_port", site.get("homelab_router_port")) or 4000)
    elif role == "caddy":
        default("caddy_site_addresses", [host] + ([hv["homelab_address"]] if hv.get("homelab_address") else []))
        vlans = site.get("homelab_vlans") or []
        default("caddy_allowed_cidrs", [x.get("subnet") for x in vlans if isinstance(x, Mapping)]
                + ["127.0.0.1/32", "::1/128"])
        v["caddy_allowed"] = list(dict.fromkeys(list(v.get("caddy_allowed_cidrs") or [])
                                                + list(v.get("caddy_allowed_cidrs_extra") or [])))
    elif role == "netdata":
        default("netdata_role", "parent" if host in (groups.get("netdata_parent") or []) else "child")
        default("netdata_hostname", host)
        default("netdata_stream_api_key", hv.get("vault_netdata_stream_api_key") or "")
        default("netdata_parent_destinations",
                [f"{a}:{v.get('netdata_port')}" for a in _addresses(model, ["netdata_parent"])])
        default("netdata_allowed_children", _addresses(model, ["netdata"]))
    elif role == "opnsense_vlans":
        default("opnsense_vlans_api_key", hv.get("vault_opnsense_api_key") or "")
        default("opnsense_vlans_api_secret", hv.get("vault_opnsense_api_secret") or "")
        default("opnsense_vlans_api_url", "https://")
        default("opnsense_vlans_vlans", site.get("homelab_vlans") or [])
    elif role in ("mosquitto", "ha_bridge", "vision_notifier"):
        _derived_ha(role, host, v, hv, model)
    elif role == "proxmox_lxc":
        default("proxmox_lxc_api_token_id", hv.get("vault_proxmox_token_id") or "")
        default("proxmox_lxc_api_token_secret", hv.get("vault_proxmox_token_secret") or "")


def _derived_ha(role: str, host: str, v: dict[str, Any], hv: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    """The templated defaults of the home automation roles (roles/*/defaults/main.yml)."""
    groups, site, hostvars = model.get("groups") or {}, model.get("site") or {}, model.get("hostvars") or {}
    passwords = hv.get("vault_mosquitto_passwords") if isinstance(hv.get("vault_mosquitto_passwords"), Mapping) else {}
    mqtt_port = hv.get("mosquitto_port", literal_defaults("mosquitto").get("mosquitto_port", 1883))
    if role == "mosquitto":
        v.setdefault("mosquitto_passwords", passwords)
        v.setdefault("mosquitto_bind_addresses", [hv["homelab_address"]] if hv.get("homelab_address") else [])
        v.setdefault("mosquitto_firewall_sources", list(dict.fromkeys(
            list(hv.get("homelab_client_cidrs") or []) + list(hv.get("common_nftables_management_cidrs") or [])
            + list(v.get("mosquitto_firewall_extra_sources") or []))))
    elif role == "ha_bridge":
        poll = hv.get("ha_bridge_poll_interval_s", v.get("ha_bridge_poll_interval_s"))
        v.setdefault("ha_bridge_expire_after_s", (_int(poll) or 0) * 3 + 1)
        v.setdefault("ha_bridge_netdata_url", f"http://127.0.0.1:{hv.get('netdata_port', 19999)}")
        v.setdefault("ha_bridge_mqtt_port", mqtt_port)
        v.setdefault("ha_bridge_mqtt_password", passwords.get(v.get("ha_bridge_mqtt_username")) or "")
        known = [str((hostvars.get(h) or {}).get("netdata_hostname", h)) for h in groups.get("netdata") or []]
        v.setdefault("ha_bridge_hosts", [{"name": n, "label": h} for n, h in zip(known, groups.get("netdata") or [])])
        v["ha_bridge_known_hosts"] = known
    elif role == "vision_notifier":
        port = hv.get("router_listen_port", hv.get("homelab_router_port", site.get("homelab_router_port"))) or 4000
        v.setdefault("vision_notifier_router_url", f"http://127.0.0.1:{port}/v1")
        v.setdefault("vision_notifier_mqtt_port", mqtt_port)
        v.setdefault("vision_notifier_mqtt_password", passwords.get(v.get("vision_notifier_mqtt_username")) or "")
        v.setdefault("vision_notifier_ingest_token", hv.get("vault_vision_notifier_ingest_token") or "")
        view = hv if host in (groups.get("gateway") or []) else {}
        v["vision_notifier_router_models"] = ha_rules.router_model_names(
            hostvars, groups, view.get("router_buckets", site.get("router_buckets")),
            view.get("router_cloud_routes", site.get("router_cloud_routes")),
            view.get("router_route_unknown_models", site.get("router_route_unknown_models")))


def _int(v: Any) -> int | None:
    return rules._int(v)


def role_vars(role: str, host: str, model: Mapping[str, Any]) -> dict[str, Any]:
    """What ``role`` resolves on ``host``: the inventory's values, else the role's defaults."""
    hv = (model.get("hostvars") or {}).get(host) or {}
    v = {k: hv[k] for k in ROLE_KEYS[role] if k in hv}
    for k, val in literal_defaults(role).items():
        v.setdefault(k, val)
    _derived(role, host, v, hv, model)
    return v


def cross_host_problems(model: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The preflights' run_once rules that look at several hosts (netdata, proxmox_lxc), and the hosts'
    DHCP/DNS entries opnsense_vlans derives (homelab_mac, homelab_address)."""
    groups, hostvars = model.get("groups") or {}, model.get("hostvars") or {}
    out = [(h, "groups", "is in group netdata_parent but not in group netdata; add it to netdata (role netdata)")
           for h in groups.get("netdata_parent") or [] if h not in (groups.get("netdata") or [])]
    nodes = {str((hostvars.get(h) or {}).get("proxmox_lxc_node", h.split(".")[0])) for h in groups.get("proxmox") or []}
    for h in groups.get("lxc_guests") or []:
        lxc = (hostvars.get(h) or {}).get("lxc")
        node = lxc.get("node") if isinstance(lxc, Mapping) else None
        if isinstance(node, str) and node not in nodes:
            out.append((h, "lxc.node", f"names node {node!r}, which no host of group proxmox manages "
                                       f"(their proxmox_lxc_node: {', '.join(sorted(nodes)) or 'none'}) (role proxmox_lxc)"))
    members = groups.get("wireguard") or []
    if len(members) > 1:
        default = literal_defaults("wireguard").get("wireguard_address")
        out += network_rules.wireguard_mesh_problems({h: (hostvars.get(h) or {}).get("wireguard_address", default)
                                              for h in members})
    if groups.get("firewall"):
        out += network_rules.network_host_problems(hostvars, (model.get("site") or {}).get("homelab_vlans"))
    return out


def site_role_problems(model: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host, field, reason) for every role rule that a site.yml run would trip."""
    out: list[tuple[str, str, str]] = cross_host_problems(model)
    groups = model.get("groups") or {}
    for host, hv in (model.get("hostvars") or {}).items():
        for role in roles_for_host(groups, host, hv or {}):
            for field, reason in rules.role_problems(role_vars(role, host, model), role):
                out.append((host, field, f"{reason} (role {role})"))
    return out


class FilterModule:
    """No filters of its own: imported by validate_inventory's homelab_inventory.py."""

    def filters(self) -> dict[str, Any]:
        return {}
