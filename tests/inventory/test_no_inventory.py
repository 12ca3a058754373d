"""No accidental target: without -i, site.yml (and validate.yml) stop in the validation play at once.

ansible.cfg names no default inventory; the first task of validate_inventory refuses Ansible's built-in
default source. The real ansible-playbook runs from the repository root, so the repository's ansible.cfg
is the one in effect (ANSIBLE_CONFIG and ANSIBLE_INVENTORY are removed from the environment).
"""
from __future__ import annotations

import configparser
import re

import pytest

from conftest import REPO, run_playbook

MESSAGE = "no inventory given: use -i inventory/<site>"


def _plays(out: str) -> list[str]:
    return re.findall(r"^PLAY \[(.+?)\]", out, flags=re.M)


def _tasks(out: str) -> list[str]:
    return re.findall(r"^TASK \[(.+?)\]", out, flags=re.M)


def test_ansible_cfg_names_no_inventory():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    assert "inventory" not in cfg["defaults"], "ansible.cfg must not point every bare run at an inventory"


@pytest.mark.parametrize("playbook", ["site.yml", "playbooks/validate.yml"])
def test_no_inventory_stops_in_validation(playbook, monkeypatch):
    monkeypatch.delenv("ANSIBLE_INVENTORY", raising=False)
    res = run_playbook(playbook)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert MESSAGE in out, out
    # it stopped at the first real task of the first play: nothing else ran, no host but the control node
    assert _plays(res.stdout) == ["Validate the inventory"], _plays(res.stdout)
    tasks = [t for t in _tasks(res.stdout) if "Validating arguments against arg spec" not in t]
    assert tasks == ["validate_inventory : Inventory given | the run names an inventory with -i"], tasks
    recap = res.stdout.split("PLAY RECAP", 1)[-1]
    assert re.findall(r"^(\S+)\s+: ok=", recap, flags=re.M) == ["localhost"]
    assert re.search(r"^localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", recap, flags=re.M), recap


def test_empty_inventory_is_named(tmp_path):
    """-i pointing at something without hosts (a typo) gets its own message naming the path."""
    res = run_playbook("-i", str(tmp_path / "inventory-typo"), "site.yml", "--tags", "gateway")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "inventory-typo has no hosts" in out, out
    assert _plays(res.stdout) == ["Validate the inventory"]


def test_with_inventory_the_check_passes():
    vault = REPO / "inventory" / "example" / "group_vars" / "all" / "vault.yml.example"
    res = run_playbook("-i", str(REPO / "inventory" / "example"), "-e", f"@{vault}", "playbooks/validate.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert MESSAGE not in res.stdout
