"""The lab is the example site: the overlay inventory/lab changes only what the allowlist in
overlay_allowlist.py names (addresses, connection, engine runtime/model, hardware facts, secrets)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from overlay_allowlist import overlay_violations  # noqa: E402

pytestmark = pytest.mark.xdist_group("lab")   # make test: with the lab's tests, on one worker (tests/conftest.py)

INVENTORY = Path(sys.executable).with_name("ansible-inventory")


def inventory_list(*dirs: str) -> dict:
    cmd = [str(INVENTORY), "--list"]
    for d in dirs:
        cmd += ["-i", str(REPO / d)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def example():
    return inventory_list("inventory/example")


@pytest.fixture(scope="module")
def lab():
    return inventory_list("inventory/example", "inventory/lab")


def test_lab_overlay_changes_only_the_allowlist(example, lab):
    assert overlay_violations(example, lab) == []


def test_lab_keeps_every_example_host_and_route(example, lab):
    assert set(lab["_meta"]["hostvars"]) == set(example["_meta"]["hostvars"])
    routes = {h: [e["route"] for e in v.get("engines", [])] for h, v in example["_meta"]["hostvars"].items()}
    assert routes == {h: [e["route"] for e in v.get("engines", [])] for h, v in lab["_meta"]["hostvars"].items()}
    # the overlay really swaps the runtime (or this test would pass on a copy of the example)
    assert {e["runtime"] for v in lab["_meta"]["hostvars"].values() for e in v.get("engines", [])} == {"llama_server"}


@pytest.mark.parametrize("host, var, value, expect", [
    ("ai-gateway", "router_buckets", {"coding": {"route": "brain"}}, "router_buckets"),
    ("ubuntu-6000", "engines.0.max_concurrency", 1, "engines[hands].max_concurrency"),
    ("ubuntu-6000", "engines.0.route", "hands2", "changes the entries"),
    ("spark", "engines.0.terminal", False, "engines[brain].terminal"),
    ("hub", "homelab_vlans.4.isolated", False, "homelab_vlans[sandbox].isolated"),
    ("pve", "wireguard_listen_port", 51821, "wireguard_listen_port"),
    ("ai-gateway", "homelab_router_port", 4001, "homelab_router_port"),
])
def test_forbidden_changes_are_named(example, lab, host, var, value, expect):
    bad = copy.deepcopy(lab)
    node = bad["_meta"]["hostvars"][host]
    *path, last = var.split(".")
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    errors = overlay_violations(example, bad)
    assert any(host in e and expect in e for e in errors), errors


def test_new_host_in_overlay_is_refused(example, lab):
    bad = copy.deepcopy(lab)
    bad["gpu_nodes"]["hosts"].append("lab-extra")
    assert any("hosts or groups" in e for e in overlay_violations(example, bad))
