"""Validated means it will converge: for the example inventory and generated variants of it, validation
(playbooks/validate.yml) passes if and only if every role's preflight passes on every host site.yml gives
the role to. The preflights run for real (include_role tasks_from=preflight), on the control node, with a
few fake facts (a supported OS) and no connection to any host.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLE, VAULT_EXAMPLE, _EXAMPLE_MODEL, engine, run_playbook, write_inventory
from test_cards import _ollama_host, workstation

# The fake facts the preflights read (supported platforms: nvidia_driver wants Ubuntu 24.04 or Debian 12).
LINUX_FACTS = {"os_family": "Debian", "distribution": "Ubuntu", "distribution_version": "24.04",
               "distribution_major_version": "24", "architecture": "x86_64", "processor_vcpus": 2}
WINDOWS_FACTS = {"os_family": "Windows", "distribution": "Microsoft Windows 11 Pro", "architecture": "64-bit"}


def _play(hosts: str, roles: list[str]) -> dict:
    """One play of site.yml with each role reduced to its preflight; engine roles only where the runtime is used."""
    tasks = []
    for role in roles:
        task = {"name": f"Preflight of {role}",
                "ansible.builtin.include_role": {"name": role, "tasks_from": "preflight"}}
        if role in ("vllm", "ollama", "llama_server", "lmstudio") and hosts != "windows":
            task["when"] = f"'{role}' in __runtimes"
        tasks.append(task)
    return {"name": f"Preflights on {hosts}", "hosts": hosts, "gather_facts": False, "connection": "local",
            "vars": {"__runtimes": "{{ engines | default([]) | map(attribute='runtime', default='') | list }}"},
            "tasks": tasks}


FAKE_FACTS = {
    "name": "Fake facts (no host is contacted)", "hosts": "all", "gather_facts": False, "connection": "local",
    "tasks": [{"name": "A supported operating system",
               "ansible.builtin.set_fact": {
                   "cacheable": True,
                   **{k: f"{{{{ ({WINDOWS_FACTS!r} if inventory_hostname in groups.get('windows', []) "
                         f"else {LINUX_FACTS!r}).get({k!r}, '') }}}}"
                      for k in sorted(set(LINUX_FACTS) | set(WINDOWS_FACTS))}}}],
}

# The plays of site.yml (playbooks/*.yml), each role reduced to its preflight.
PREFLIGHTS = yaml.safe_dump([
    FAKE_FACTS,
    _play("firewall", ["opnsense_vlans"]),
    _play("proxmox", ["proxmox_lxc"]),
    _play("gpu_nodes:!windows", ["common", "nvidia_driver", "vllm", "ollama", "llama_server", "lmstudio",
                                 "engine_lockdown", "gpu_watchdog"]),
    _play("windows", ["lmstudio"]),
    _play("gateway", ["common", "router", "caddy"]),
    _play("netdata", ["netdata"]),
    _play("wireguard", ["wireguard"]),
    _play("home_automation", ["mosquitto", "homelab_ha_runtime", "ha_bridge", "vision_notifier"]),
    _play("homelab_agents", ["homelab_agent"]),
], sort_keys=False)

# Preflights are controller-side assertions; these make sure nothing would connect even if one were not.
NO_CONTACT = ["-e", "ansible_connection=local", "-e", "ansible_python_interpreter=/usr/bin/python3"]


def _run_both(tmp_path: Path, inv: Path, *extra: str):
    playbook = tmp_path / "preflights.yml"
    playbook.write_text(PREFLIGHTS)
    validate = run_playbook("-i", str(inv), *extra, "playbooks/validate.yml", timeout=300)
    preflight = run_playbook("-i", str(inv), *extra, *NO_CONTACT, str(playbook), timeout=300)
    return validate, preflight


def _failed_hosts(out: str) -> set[str]:
    recap = out.split("PLAY RECAP", 1)[-1]
    return {m.group(1) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=([1-9])",
                                             recap, flags=re.M)}


def _assert_agree(validate, preflight, expect_ok: bool, marker: str | None = None):
    report = ("\n--- validate.yml ---\n" + validate.stdout[-6000:] + validate.stderr[-2000:]
              + "\n--- preflights ---\n" + preflight.stdout[-8000:] + preflight.stderr[-2000:])
    assert "UNREACHABLE" not in preflight.stdout, report
    assert (validate.returncode == 0) == (preflight.returncode == 0), report
    assert (validate.returncode == 0) == expect_ok, report
    if marker:  # the mutation is what both of them reject
        assert marker in validate.stdout and marker in preflight.stdout, report


def test_example_inventory_validates_and_every_preflight_passes(tmp_path):
    validate, preflight = _run_both(tmp_path, EXAMPLE, "-e", f"@{VAULT_EXAMPLE}")
    _assert_agree(validate, preflight, expect_ok=True)
    assert "Inventory OK: 8 hosts, 4 GPU nodes" in validate.stdout
    # every host of the example took part, and none failed
    assert _failed_hosts(preflight.stdout) == set(), preflight.stdout[-4000:]
    for host in ("opnsense", "pve", "ai-gateway", "hub", "ubuntu-4090", "ubuntu-6000", "spark", "win-5090"):
        assert re.search(rf"^{re.escape(host)}\s+: ok=[1-9]", preflight.stdout, flags=re.M), host


# ---------------------------------------------------------------------------------------------------------
# generated variants: (mutation, validation and preflights should pass, text both must print when they fail)

def _rename_route(m: dict, old: str, new: str) -> None:
    """Rename a route everywhere: engine entries, spill/failover, buckets, promotions, API-key names."""
    for part in ("hostvars", "site"):
        m[part] = json.loads(json.dumps(m[part]).replace(f'"{old}"', f'"{new}"'))


def route_with_underscore(m):
    _rename_route(m, "eyes", "fast_eyes")


def no_management_cidrs(m):
    for hv in m["hostvars"].values():
        hv.pop("common_nftables_management_cidrs", None)


def engine_port_out_of_range(m):
    engine(m, "ubuntu-6000")["port"] = 70000


def ssh_port_zero(m):
    m["hostvars"]["ubuntu-4090"]["common_ssh_port"] = 0


def caddy_ports_equal(m):
    m["hostvars"]["ai-gateway"]["caddy_https_port"] = 80


def caddy_body_limit_too_small(m):
    m["hostvars"]["ai-gateway"]["caddy_request_body_max_bytes"] = 4096


def netdata_key_not_a_uuid(m):
    for hv in m["hostvars"].values():
        hv["vault_netdata_stream_api_key"] = "not-a-uuid"


def no_router_admin_key(m):
    for hv in m["hostvars"].values():
        hv.pop("vault_router_admin_key", None)


def lmstudio_on_linux_without_archive(m):
    m["groups"]["windows"] = []


def llama_vision_without_projector(m):
    engine(m, "ubuntu-4090")["runtime"] = "llama_server"


def wireguard_peer_bad_key(m):
    m["hostvars"]["ai-gateway"]["wireguard_peers"] = [
        {"name": "phone", "public_key": "not-a-key", "allowed_ips": ["10.99.0.10/32"]}]


def vlan_without_parent_interface(m):
    del m["site"]["homelab_vlans"][0]["parent_if"]


def lxc_guest_on_unknown_node(m):
    m["hostvars"]["hub"]["lxc"]["node"] = "pve2"


def netdata_parent_not_monitored(m):
    m["groups"]["netdata"].remove("ai-gateway")


def wireguard_peer_ok(m):
    m["hostvars"]["ai-gateway"]["wireguard_peers"] = [
        {"name": "phone", "public_key": "x" * 43 + "=", "allowed_ips": ["10.99.0.10/32"]}]


def fifth_node_llama_server(m):
    m["groups"]["gpu_nodes"].append("ubuntu-3090")
    m["groups"]["netdata"].append("ubuntu-3090")
    m["groups"]["all"].append("ubuntu-3090")
    m["hostvars"]["ubuntu-3090"] = {
        **{k: v for k, v in m["hostvars"]["spark"].items() if k.startswith(("vault_", "common_"))},
        "homelab_address": "10.20.0.15", "homelab_vlan": "ai", "gpus": [{"name": "RTX 3090", "vram_gib": 24}],
        "engines": [{"route": "ears", "runtime": "llama_server", "model": "ears.gguf", "served_name": "ears",
                     "params_b": 8, "weight_bits": 4, "context": 8192, "gpu_memory_utilization": 0.9,
                     "port": 8080, "failover": "brain"}]}


def seed_003_workstation_two_cards(m):
    workstation(m)


def one_ollama_two_models(m):
    _ollama_host(m)


def ollama_model_keep_alive_not_a_duration(m):
    _ollama_host(m, keep_alive="forever")


def vllm_flag_the_pinned_version_lacks(m):
    engine(m, "ubuntu-6000")["args"]["kv_cache_dtype"] = "turboquant_k8v4"


def vllm_listen_address_in_args(m):
    engine(m, "spark")["args"]["host"] = "127.0.0.1"


def engine_names_no_card_on_two_card_host(m):
    workstation(m)
    engine(m, "ubuntu-4090", 1).pop("gpus")


def mqtt_user_without_password(m):
    for hv in m["hostvars"].values():
        hv["vault_mosquitto_passwords"].pop("frigate", None)


def bridge_poll_interval_zero(m):
    m["hostvars"]["ai-gateway"]["ha_bridge_poll_interval_s"] = 0


def bridge_host_not_in_inventory(m):
    m["hostvars"]["ai-gateway"]["ha_bridge_hosts"] = [{"name": "spark", "label": "Spark"},
                                                      {"name": "ghost", "label": "Ghost"}]


def vision_stage1_route_unknown(m):
    m["hostvars"]["ai-gateway"]["vision_notifier_stage1_model"] = "homelab/nope"


def mqtt_tls_without_certificate(m):
    m["hostvars"]["ai-gateway"]["mosquitto_tls_enabled"] = True


def vision_ingest_on_lan_without_token(m):
    m["hostvars"]["ai-gateway"].update(vision_notifier_listen_host="10.30.0.10", vault_vision_notifier_ingest_token="")


def agent_infra_path_escapes(m):
    m["hostvars"]["spark"]["homelab_agent_infra_paths"] = ["/etc/homelab", "/var/log/../../etc/shadow"]


def agent_infra_paths_narrowed(m):
    m["hostvars"]["spark"]["homelab_agent_infra_paths"] = ["/etc/homelab/agent.json", "/var/log/homelab"]


def home_automation_tuned(m):
    m["hostvars"]["ai-gateway"].update(ha_bridge_poll_interval_s=30, vision_notifier_stage1_model="eyes",
                                       ha_bridge_hosts=[{"name": "spark", "label": "Spark", "unified_memory": True}])


VARIANTS = [
    (route_with_underscore, False, "'fast_eyes'"),
    (no_management_cidrs, False, "common_nftables_management_cidrs: is required"),
    (engine_port_out_of_range, False, "70000"),
    (ssh_port_zero, False, "common_ssh_port"),
    (caddy_ports_equal, False, "caddy_https_port"),
    (caddy_body_limit_too_small, False, "caddy_request_body_max_bytes: must be an integer >= 1048576"),
    (netdata_key_not_a_uuid, False, "netdata_stream_api_key: is required"),
    (no_router_admin_key, False, "router_admin_key: is required"),
    (lmstudio_on_linux_without_archive, False, "lmstudio_archive_url: is required"),
    (llama_vision_without_projector, False, "args.mmproj: is required"),
    (wireguard_peer_bad_key, False, "public_key: is required"),
    (vlan_without_parent_interface, False, "parent_if: is required"),
    (lxc_guest_on_unknown_node, False, "no host of group proxmox manages"),
    (netdata_parent_not_monitored, False, "not in group netdata"),
    (wireguard_peer_ok, True, None),
    (fifth_node_llama_server, True, None),
    (seed_003_workstation_two_cards, True, None),
    (one_ollama_two_models, True, None),
    (ollama_model_keep_alive_not_a_duration, False, "keep_alive"),
    (vllm_flag_the_pinned_version_lacks, False, "'turboquant_k8v4': vLLM 0.11.0 accepts"),
    (vllm_listen_address_in_args, False, "args.host: engine 'brain': is set by the role"),
    (engine_names_no_card_on_two_card_host, False, "engines[1].gpus"),
    (mqtt_user_without_password, False, "user 'frigate' has no password"),
    (bridge_poll_interval_zero, False, "ha_bridge_poll_interval_s: must be an integer > 0"),
    (bridge_host_not_in_inventory, False, "'ghost' is no host of group netdata"),
    (vision_stage1_route_unknown, False, "'homelab/nope' is not a model the router answers"),
    (mqtt_tls_without_certificate, False, "mosquitto_tls_cert_file: is required"),
    (vision_ingest_on_lan_without_token, False, "vision_notifier_ingest_token: is required"),
    (home_automation_tuned, True, None),
    (agent_infra_path_escapes, False, "homelab_agent_infra_paths[1]: path '/var/log/../../etc/shadow' must not"),
    (agent_infra_paths_narrowed, True, None),
]


@pytest.mark.parametrize("mutate,expect_ok,marker", VARIANTS, ids=[v[0].__name__ for v in VARIANTS])
def test_variant_validation_agrees_with_the_preflights(tmp_path, mutate, expect_ok, marker):
    model = copy.deepcopy(_EXAMPLE_MODEL)
    mutate(model)
    inv = write_inventory(tmp_path / "inv", model)
    validate, preflight = _run_both(tmp_path, inv)
    _assert_agree(validate, preflight, expect_ok, marker)
