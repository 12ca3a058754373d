"""The real playbooks: validate.yml on the example, the lab and broken inventories; site.yml syntax."""
from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import EXAMPLE, REPO, VAULT_EXAMPLE, _EXAMPLE_MODEL, engine, run_playbook, write_inventory


def _recap_hosts(out: str) -> list[str]:
    recap = out.split("PLAY RECAP", 1)[-1]
    return re.findall(r"^(\S+)\s+: ok=", recap, flags=re.M)


def test_example_inventory_validates_clean():
    res = run_playbook("-i", str(EXAMPLE), "-e", f"@{VAULT_EXAMPLE}", "playbooks/validate.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Inventory OK: 8 hosts, 4 GPU nodes" in res.stdout
    # nothing but the control node took part
    assert _recap_hosts(res.stdout) == ["localhost"]


def test_example_without_its_secrets_names_each_one():
    """No vault: validation lists every missing secret (host, variable, why) instead of "Inventory OK"."""
    res = run_playbook("-i", str(EXAMPLE), "playbooks/validate.yml")
    lines = _fail_lines(res)
    for want in ("ai-gateway: router_admin_key: is required", "ai-gateway: netdata_stream_api_key: is required",
                 "opnsense: opnsense_vlans_api_key: is required", "pve: proxmox_lxc_api_token_id: is required"):
        assert any(ln.startswith(want) for ln in lines), (want, lines)


def test_lab_site_validates_clean():
    """The lab is the example site plus the overlay inventory/lab; with the example vault's secrets it
    validates exactly like the example (same hosts, same routes)."""
    lab = REPO / "inventory" / "lab"
    res = run_playbook("-i", str(EXAMPLE), "-i", str(lab), "-e", f"@{VAULT_EXAMPLE}", "playbooks/validate.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Inventory OK: 8 hosts, 4 GPU nodes" in res.stdout


def test_site_syntax_check():
    res = run_playbook("--syntax-check", "-i", str(EXAMPLE), "site.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def _broken(tmp_path, *mutations):
    model = copy.deepcopy(_EXAMPLE_MODEL)
    for mutate in mutations:
        mutate(model)
    return write_inventory(tmp_path / "inv", model)


def _fail_lines(res) -> list[str]:
    """The error lines of the failing validation task (as printed in its msg)."""
    assert res.returncode != 0, res.stdout
    text = res.stdout + res.stderr
    m = re.search(r"Inventory validation found (\d+) error\(s\):\n(.*?)(?:\nOrigin:|\n\S*fatal|\Z)", text, re.S)
    assert m, text
    lines = [ln.strip() for ln in m.group(2).splitlines() if ln.strip()]
    assert len(lines) == int(m.group(1)), lines
    return lines


def test_written_copy_of_example_is_clean(tmp_path):
    """The writer used below produces a valid inventory when nothing is broken."""
    res = run_playbook("-i", str(_broken(tmp_path)), "playbooks/validate.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_many_faults_fail_once_with_every_message(tmp_path):
    def vlan(m):
        m["site"]["homelab_vlans"][1]["id"] = 4095

    def address(m):
        m["hostvars"]["hub"]["homelab_address"] = "10.31.0.11"

    def port(m):
        engine(m, "ubuntu-4090")["port"] = 22

    def fit(m):
        engine(m, "ubuntu-6000")["params_b"] = 160

    def runtime(m):
        engine(m, "win-5090")["runtime"] = "tgi"

    def blind_failover(m):
        engine(m, "ubuntu-4090")["failover"] = "hands"

    def bucket(m):
        m["site"]["router_buckets"]["coding"]["route"] = "handz"

    inv = _broken(tmp_path, vlan, address, port, fit, runtime, blind_failover, bucket)
    res = run_playbook("-i", str(inv), "playbooks/validate.yml")
    lines = _fail_lines(res)
    expected = [
        ("all: homelab_vlans[1].id:", "outside 1-4094"),
        ("hub: homelab_address:", "outside VLAN 'services'"),
        ("ubuntu-4090: engines[0].port:", "already used by ssh"),
        ("ubuntu-6000: engines[0].gpu_memory_utilization:", "does not fit"),
        ("win-5090: engines[0].runtime:", "unknown runtime 'tgi'"),
        ("ubuntu-4090: engines[0].failover:", "no vision"),
        ("ai-gateway: router_buckets.coding.route:", "'handz'"),
    ]
    for prefix, reason in expected:
        assert any(ln.startswith(prefix) and reason in ln for ln in lines), (prefix, reason, lines)
    assert len(lines) == len(expected), lines
    assert _recap_hosts(res.stdout) == ["localhost"]


# A representative few through the real playbook; the full matrix is in test_checks.py.
@pytest.mark.parametrize("case", ["cycle", "router-schema"])
def test_graph_faults_through_the_playbook(tmp_path, case):
    def cycle(m):
        engine(m, "ubuntu-6000")["failover"] = "mouth"
        engine(m, "win-5090").update(failover="hands", spill="hands")

    def router_schema(m):
        del m["site"]["router_buckets"]["unknown"]

    mutate, want = {
        "cycle": (cycle, "win-5090: engines[0].spill: fallback cycle for text requests: mouth -> hands -> mouth"),
        "router-schema": (router_schema, "ai-gateway: router_buckets: router schema: a bucket named 'unknown'"),
    }[case]
    res = run_playbook("-i", str(_broken(tmp_path, mutate)), "playbooks/validate.yml")
    lines = _fail_lines(res)
    assert any(ln.startswith(want) for ln in lines), lines


def test_undefined_variable_is_reported_not_crashed(tmp_path):
    def undefined(m):
        m["hostvars"]["spark"]["homelab_address"] = "{{ spark_ip }}"

    res = run_playbook("-i", str(_broken(tmp_path, undefined)), "playbooks/validate.yml")
    lines = _fail_lines(res)
    assert any(ln.startswith("spark: homelab_address: cannot be evaluated") and "spark_ip" in ln
               for ln in lines), lines


def test_validation_runs_first_in_site_and_stops_it(tmp_path):
    """site.yml with a broken inventory fails in validation, before any play reaches a host."""
    def vlan(m):
        m["site"]["homelab_vlans"][0]["id"] = 0

    res = run_playbook("-i", str(_broken(tmp_path, vlan)), "site.yml", "--tags", "gateway")
    lines = _fail_lines(res)
    assert lines == ["all: homelab_vlans[0].id: VLAN 'mgmt': id 0 is outside 1-4094"]
    assert _recap_hosts(res.stdout) == ["localhost"]


def test_limit_reruns_still_validate(tmp_path):
    """`--limit host` drops localhost from the first play; validation then runs once, delegated to the controller."""
    ok = run_playbook("-i", str(EXAMPLE), "-e", f"@{VAULT_EXAMPLE}", "playbooks/validate.yml",
                      "--limit", "ubuntu-4090")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Inventory OK: 8 hosts, 4 GPU nodes" in ok.stdout

    def vlan(m):
        m["site"]["homelab_vlans"][1]["id"] = 5000

    res = run_playbook("-i", str(_broken(tmp_path, vlan)), "site.yml", "--tags", "gpu_nodes",
                       "--limit", "ubuntu-4090")
    assert _fail_lines(res) == ["all: homelab_vlans[1].id: VLAN 'ai': id 5000 is outside 1-4094"]
    # every task result for the limited host was delegated to the control node
    results = re.findall(r"^(?:ok|changed|fatal|failed): \[(ubuntu-4090[^\]]*)\]", res.stdout, flags=re.M)
    assert results and all("-> localhost" in r for r in results), results


def test_open_webui_without_a_key_validates_only_with_a_local_router(tmp_path):
    """The gateway's Open WebUI with an empty key: fine with the router on the same host (the role ensures the key
    with `homelab-router keys ensure`); a router elsewhere fails naming host, field and reason."""
    def local(m):
        m["hostvars"]["ai-gateway"].update(open_webui_enabled=True, open_webui_router_api_key="")

    res = run_playbook("-i", str(_broken(tmp_path / "local", local)), "playbooks/validate.yml")
    assert res.returncode == 0, res.stdout + res.stderr

    def remote(m):
        local(m)
        m["hostvars"]["ai-gateway"]["open_webui_router_url"] = "http://10.30.0.11:4000/v1"

    lines = _fail_lines(run_playbook("-i", str(_broken(tmp_path / "remote", remote)), "playbooks/validate.yml"))
    assert len(lines) == 1 and lines[0].startswith("ai-gateway: open_webui_router_api_key: is required"), lines
    assert "another host" in lines[0] and "10.30.0.11" in lines[0]
