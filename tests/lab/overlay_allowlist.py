"""What the lab overlay (inventory/lab) may change of the example site (inventory/example), as a pure
function over the merged host variables Ansible computes with and without the overlay.

The lab must converge the files an operator copies. The overlay may change only:
  - addresses and connection settings: ansible_* connection variables, homelab_address, the VLANs' subnets and
    the management/client networks made of them,
    the API endpoints of the firewall and the hypervisor (their emulators on loopback) and the CA they use;
  - each GPU node's engine runtime and model: an engine entry's runtime, model, model facts (params_b,
    weight_bits, context) and runtime args, and the llama_server_* runtime settings;
  - hardware facts: gpus, the NVIDIA driver install switches, the nvidia_uvm module reload (none in a container);
  - install sources built once on the lab machine: the llama-server binary, Open WebUI's wheelhouse;
  - secrets (vault_*) and the lab's own lab_* settings, which no role reads.
Everything else — hosts, groups, routing policy, route names, aliases, slots, spill/failover, firewall and
Netdata/WireGuard settings — must be the example's.
"""
from __future__ import annotations

import re

ALLOWED_VARS = [
    r"ansible_(connection|host|port|user|password|python_interpreter|ssh_private_key_file|ssh_common_args)",
    r"homelab_address", r"caddy_site_addresses", r"common_nftables_management_cidrs", r"homelab_client_cidrs",
    r"proxmox_api_host", r"proxmox_lxc_api_(port|ca_path)", r"opnsense_vlans_api_(port|ca_path)",
    r"gpus", r"nvidia_driver_install", r"nvidia_driver_blacklist_nouveau", r"gpu_watchdog_uvm_reload_commands",
    r"llama_server_(install_method|version|binary_src|cuda|threads)", r"open_webui_wheelhouse_archive",
    r"vault_.*", r"lab_.*",
]
ALLOWED_ENGINE_KEYS = {"runtime", "model", "params_b", "weight_bits", "context", "args"}
ALLOWED_VLAN_KEYS = {"subnet"}
_ALLOWED = re.compile("|".join(f"(?:{p})" for p in ALLOWED_VARS))


def _list_diff(host: str, var: str, base: list, over: list, allowed: set, key: str) -> list[str]:
    errors = []
    if [b.get(key) for b in base] != [o.get(key) for o in over]:
        return [f"{host}: {var}: the overlay changes the entries ({key}s {[b.get(key) for b in base]} -> "
                f"{[o.get(key) for o in over]}); it may only change {sorted(allowed)} of each"]
    for b, o in zip(base, over):
        for field in sorted(set(b) | set(o)):
            if field not in allowed and b.get(field) != o.get(field):
                errors.append(f"{host}: {var}[{b.get(key)}].{field}: {b.get(field)!r} -> {o.get(field)!r} "
                              f"(not allowed; the overlay may change only {sorted(allowed)})")
    return errors


def overlay_violations(base: dict, merged: dict) -> list[str]:
    """base/merged: `ansible-inventory --list` output without/with the overlay. Returns one message per
    change the overlay is not allowed to make (empty: the lab runs the example site)."""
    errors: list[str] = []
    groups_base = {g: v for g, v in base.items() if g != "_meta"}
    groups_merged = {g: v for g, v in merged.items() if g != "_meta"}
    if groups_base != groups_merged:
        errors.append(f"the overlay changes hosts or groups: {groups_base} -> {groups_merged}")
    hv_base = base.get("_meta", {}).get("hostvars", {})
    hv_merged = merged.get("_meta", {}).get("hostvars", {})
    for host in sorted(set(hv_base) | set(hv_merged)):
        b, m = hv_base.get(host, {}), hv_merged.get(host, {})
        for var in sorted(set(b) | set(m)):
            if b.get(var) == m.get(var) or _ALLOWED.fullmatch(var):
                continue
            if var == "engines":
                errors += _list_diff(host, var, b.get(var) or [], m.get(var) or [], ALLOWED_ENGINE_KEYS, "route")
            elif var == "homelab_vlans":
                errors += _list_diff(host, var, b.get(var) or [], m.get(var) or [], ALLOWED_VLAN_KEYS, "name")
            else:
                errors.append(f"{host}: {var}: {b.get(var)!r} -> {m.get(var)!r} (the overlay may not change it)")
    return errors
