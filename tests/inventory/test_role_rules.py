"""Unit tests of the shared role rules (plugins/filter/homelab_rules.py) and of validation's view of them
(plugins/filter/homelab_site_roles.py): plain Python, no Ansible run."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, _EXAMPLE_MODEL, hi

sys.path.insert(0, str(REPO / "plugins" / "filter"))
import homelab_rules as rules  # noqa: E402
import homelab_site_roles as site  # noqa: E402


def _fields(problems) -> list[str]:
    return [f for f, _ in problems]


def _vars(role: str, **overrides) -> dict:
    """The role's variables for ubuntu-4090 / ai-gateway of the example, with overrides."""
    host = "ai-gateway" if role in ("router", "caddy", "wireguard") else "ubuntu-4090"
    v = site.role_vars(role, host, _EXAMPLE_MODEL)
    v.update(overrides)
    return v


@pytest.mark.parametrize("name,ok", [("eyes", True), ("eyes-2", True), ("0day", True), ("fast_eyes", False),
                                     ("Eyes", False), ("-eyes", False), ("", False)])
def test_route_names(name, ok):
    problems = rules.rules_vllm({"vllm_engines": [{"route": name, "model": "m", "port": 8000}]})
    assert ("vllm_engines[0].route" in _fields(problems)) is not ok, problems


def test_validation_uses_the_same_route_rule():
    assert hi.ROUTE_NAME_RE is rules.ROUTE_NAME_RE


def test_common_management_cidrs_required_only_with_the_firewall():
    assert _fields(rules.rules_common(_vars("common", common_nftables_management_cidrs=[]))) == \
        ["common_nftables_management_cidrs"]
    assert rules.rules_common(_vars("common", common_nftables_management_cidrs=[],
                                    common_nftables_enabled=False)) == []
    assert _fields(rules.rules_common(_vars("common", common_nftables_management_cidrs=["10.10.0.0/33"]))) == \
        ["common_nftables_management_cidrs[0]"]


@pytest.mark.parametrize("entry,field", [
    ({"port": 22, "from": ["10.0.0.0/8"]}, None),
    ({"port": "9000-9001", "proto": "udp", "from": ["2001:db8::/32"]}, None),
    ({"port": 70000, "from": ["10.0.0.0/8"]}, "common_nftables_allow[0].port"),
    ({"port": 22, "proto": "icmp", "from": ["10.0.0.0/8"]}, "common_nftables_allow[0].proto"),
    ({"port": 22, "from": []}, "common_nftables_allow[0].from"),
    ({"port": 22, "from": ["nope"]}, "common_nftables_allow[0].from"),
])
def test_common_allowlist(entry, field):
    got = _fields(rules.rules_common(_vars("common", common_nftables_allow=[entry])))
    assert got == ([field] if field else []), got


def test_engine_lists_ports_and_duplicates():
    engines = [{"route": "a", "model": "m", "port": 8000}, {"route": "a", "model": "", "port": 8000}]
    assert sorted(_fields(rules.rules_vllm({"vllm_engines": engines}))) == \
        ["vllm_engines[1].model", "vllm_engines[1].port", "vllm_engines[1].route"]
    bad_util = [{"route": "a", "model": "m", "port": 8000, "gpu_memory_utilization": 1.5}]
    assert _fields(rules.rules_vllm({"vllm_engines": bad_util})) == ["vllm_engines[0].gpu_memory_utilization"]


def test_one_server_port_for_ollama_and_lmstudio():
    two = [{"route": "a", "model": "m", "port": 11434}, {"route": "b", "model": "n", "port": 11435}]
    assert "ollama_engines" in _fields(rules.rules_ollama(_vars("ollama", ollama_engines=two)))
    assert "lmstudio_engines" in _fields(rules.rules_lmstudio(_vars("lmstudio", lmstudio_engines=two, windows=True)))


def test_lmstudio_linux_needs_a_pinned_archive_windows_does_not():
    one = [{"route": "a", "model": "m", "port": 1234}]
    assert _fields(rules.rules_lmstudio(_vars("lmstudio", lmstudio_engines=one, windows=False))) == \
        ["lmstudio_archive_url", "lmstudio_archive_checksum"]
    assert rules.rules_lmstudio(_vars("lmstudio", lmstudio_engines=one, windows=True)) == []


def test_llama_server_vision_needs_a_projector():
    eng = [{"route": "a", "model": "m.gguf", "port": 8080, "vision": True}]
    assert _fields(rules.rules_llama_server(_vars("llama_server", llama_server_engines=eng))) == \
        ["llama_server_engines[0].args.mmproj"]
    eng[0]["args"] = {"mmproj": "p.gguf"}
    assert rules.rules_llama_server(_vars("llama_server", llama_server_engines=eng)) == []
    assert _fields(rules.rules_llama_server(_vars("llama_server", llama_server_install_method="binary"))) == \
        ["llama_server_binary_src"]


def test_secrets_are_required_and_never_shown():
    secret = "s3cr3t-but-short"[:10]
    problems = rules.rules_router(_vars("router", router_admin_key=secret))
    assert _fields(problems) == ["router_admin_key"] and secret not in str(problems)
    assert _fields(rules.rules_netdata({**_vars("router"), "netdata_port": 19999, "netdata_hostname": "h",
                                        "netdata_update_every": 1, "netdata_role": "parent",
                                        "netdata_stream_api_key": "nope"})) == ["netdata_stream_api_key"]


def test_wireguard_peers():
    good = {"name": "phone", "public_key": "A" * 43 + "=", "allowed_ips": "10.99.0.10/32"}
    assert rules.rules_wireguard(_vars("wireguard", wireguard_peers=[good])) == []
    dup = dict(good, name="tablet")
    assert _fields(rules.rules_wireguard(_vars("wireguard", wireguard_peers=[good, dup]))) == \
        ["wireguard_peers[1].public_key"]
    assert _fields(rules.rules_wireguard(_vars("wireguard", wireguard_mtu=1000))) == ["wireguard_mtu"]


def test_engine_lockdown_needs_someone_to_reach_the_engines():
    assert rules.rules_engine_lockdown(_vars("engine_lockdown")) == []
    alone = _vars("engine_lockdown", engine_lockdown_allowed_sources=[])
    assert _fields(rules.rules_engine_lockdown(alone)) == ["engine_lockdown_allowed_sources"]


def test_unknown_role_is_a_clear_error():
    with pytest.raises(ValueError, match="no rules for role 'nope'"):
        rules.role_errors({}, "nope", "h")


def test_filter_formats_host_field_reason():
    lines = rules.role_errors({"router_admin_key": "", "router_listen_port": 4000}, "router", "gw")
    assert lines == [f"gw: router_admin_key: {rules.rules_router({'router_listen_port': 1})[0][1]}"]


def test_the_example_has_no_role_problems():
    assert site.site_role_problems(_EXAMPLE_MODEL) == []


def test_roles_for_host_mirror_the_playbooks():
    g = _EXAMPLE_MODEL["groups"]
    hv = _EXAMPLE_MODEL["hostvars"]
    assert site.roles_for_host(g, "ubuntu-4090", hv["ubuntu-4090"]) == \
        ["common", "nvidia_driver", "vllm", "engine_lockdown", "netdata", "homelab_agent"]
    assert site.roles_for_host(g, "win-5090", hv["win-5090"]) == ["lmstudio"]
    assert site.roles_for_host(g, "ai-gateway", hv["ai-gateway"]) == \
        ["common", "router", "caddy", "open_webui", "netdata", "wireguard", "mosquitto", "homelab_ha_runtime",
         "ha_bridge", "vision_notifier", "homelab_agent"]
    assert site.roles_for_host(g, "opnsense", hv["opnsense"]) == ["opnsense_vlans"]
    # and the playbooks still give those roles to those groups
    text = "".join(p.read_text() for p in (REPO / "playbooks").glob("*.yml"))
    for role in ("common", "nvidia_driver", "vllm", "engine_lockdown", "netdata", "lmstudio", "router", "caddy",
                 "wireguard", "opnsense_vlans", "proxmox_lxc", "mosquitto", "ha_bridge", "vision_notifier",
                 "homelab_agent"):
        assert re.search(rf"(role|name): {role}\b", text), role


@pytest.mark.parametrize("role", sorted(rules.RULES))
def test_each_preflight_passes_every_variable_validation_rebuilds(role):
    """The preflight hands the rules the same variables validation rebuilds (ROLE_KEYS), all role defaults."""
    preflight = (REPO / "roles" / role / "tasks" / "preflight.yml").read_text()
    call = re.search(r"\{\{ \{(.*?)\}\s*\|\s*homelab_role_errors\('" + role + r"', inventory_hostname\)", preflight,
                     re.S)
    assert call, f"roles/{role}/tasks/preflight.yml does not call homelab_role_errors('{role}', ...)"
    passed = set(re.findall(r"'(\w+)':", call.group(1)))
    assert set(site.ROLE_KEYS[role]) <= passed, set(site.ROLE_KEYS[role]) - passed
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    missing = [k for k in site.ROLE_KEYS[role] if k not in defaults]
    assert not missing, f"{role}: not role defaults: {missing}"


def test_shared_plugin_dir_is_configured_for_ansible_and_molecule():
    assert re.search(r"^filter_plugins = plugins/filter$", (REPO / "ansible.cfg").read_text(), re.M)
    assert "plugins/filter" in (REPO / ".config" / "molecule" / "config.yml").read_text()
    assert Path(rules.__file__).resolve().parent == REPO / "plugins" / "filter"


def test_open_webui_runs_on_the_gateway_only_when_enabled_and_needs_a_key_only_for_a_remote_router():
    groups = {"gateway": ["ai-gateway"]}
    assert "open_webui" not in site.roles_for_host(groups, "ai-gateway", {})
    assert site.roles_for_host(groups, "ai-gateway", {"open_webui_enabled": True})[-1] == "open_webui"
    v = _vars("router")
    v.update({k: val for k, val in site.literal_defaults("open_webui").items() if k.startswith("open_webui_")})
    # The defaults: the router on this host, no key in the vault (the role ensures it with `keys ensure`).
    assert v["open_webui_router_api_key"] == "" and rules.rules_open_webui(v) == []
    for url in ("http://localhost:4000/v1", "http://[::1]:4000/v1", "https://127.0.0.1/v1"):
        assert rules.rules_open_webui({**v, "open_webui_router_url": url}) == [], url
    # A router on another host: its key is required, and the reason says why and what to do.
    for url in ("http://10.20.0.2:4000/v1", "https://router.home.arpa/v1", "http://127.0.0.1.evil:4000/v1"):
        problems = rules.rules_open_webui({**v, "open_webui_router_url": url})
        assert _fields(problems) == ["open_webui_router_api_key"], url
        assert "another host" in problems[0][1] and url in problems[0][1]
    assert _fields(rules.rules_open_webui({**v, "open_webui_router_api_key": 42})) == ["open_webui_router_api_key"]
    v.update(open_webui_router_api_key="hlr_0123456789ab_secret", open_webui_router_url="http://127.0.0.1:4000")
    problems = rules.rules_open_webui(v)
    assert _fields(problems) == ["open_webui_router_url"] and "hlr_0123" not in str(problems)
    v.update(open_webui_router_url="http://10.20.0.2:4000/v1")
    assert rules.rules_open_webui(v) == []


@pytest.mark.parametrize("value,ok", [(True, True), (False, True), ("yes", True), ("maybe", False), (3, False)])
def test_nvidia_driver_open_is_a_boolean(value, ok):
    problems = rules.rules_nvidia_driver(_vars("nvidia_driver", nvidia_driver_open=value))
    assert ("nvidia_driver_open" in _fields(problems)) is not ok, problems


def test_broken_inventory_nvidia_driver_open_names_host_field_reason():
    import copy
    broken = copy.deepcopy(_EXAMPLE_MODEL)
    broken["hostvars"]["ubuntu-6000"]["nvidia_driver_open"] = "maybe"
    problems = site.site_role_problems(broken)
    hits = [p for p in problems if p[:2] == ("ubuntu-6000", "nvidia_driver_open")]
    assert hits and "must be true or false" in hits[0][2] and "role nvidia_driver" in hits[0][2], problems
