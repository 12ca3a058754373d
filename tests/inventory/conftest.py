"""Shared helpers for the inventory tests: the validation module, the example inventory as a model, runners."""
from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "example"
PLUGIN = REPO / "roles" / "validate_inventory" / "filter_plugins" / "homelab_inventory.py"
# `cp vault.yml.example vault.yml`, as the README says: given to ansible-playbook as extra vars
VAULT_EXAMPLE = EXAMPLE / "group_vars" / "all" / "vault.yml.example"
VENV_BIN = Path(sys.executable).parent


def _load_plugin():
    spec = importlib.util.spec_from_file_location("homelab_inventory", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("homelab_inventory", module)
    spec.loader.exec_module(module)
    return module


hi = _load_plugin()


def _walk_groups(name: str, node: dict, groups: dict[str, list[str]]) -> list[str]:
    """Resolve a YAML-inventory group (hosts + children) into its member list, filling ``groups``."""
    node = node or {}
    members = list((node.get("hosts") or {}).keys())
    for child, cnode in (node.get("children") or {}).items():
        for h in _walk_groups(child, cnode, groups):
            if h not in members:
                members.append(h)
    existing = groups.setdefault(name, [])
    for h in members:
        if h not in existing:
            existing.append(h)
    return members


def load_yaml_dir(path: Path) -> dict:
    """Merge the YAML files of a group_vars/host_vars entry (a file or a directory of .yml files)."""
    data: dict = {}
    files = sorted(path.glob("*.yml")) if path.is_dir() else [path]
    for f in files:
        data.update(yaml.safe_load(f.read_text()) or {})
    return data


def model_from_dir(inv: Path) -> dict:
    """The validation model of an inventory directory, read with plain YAML (no templating needed by the checks)."""
    hosts_doc = yaml.safe_load((inv / "hosts.yml").read_text())
    groups: dict[str, list[str]] = {}
    _walk_groups("all", hosts_doc["all"], groups)
    site: dict = {}
    for candidate in (inv / "group_vars" / "all", inv / "group_vars" / "all.yml"):
        if candidate.exists():
            site.update(load_yaml_dir(candidate))
    # the secrets as a user has them after `cp vault.yml.example vault.yml` (validation requires them)
    vault_example = inv / "group_vars" / "all" / "vault.yml.example"
    if vault_example.exists():
        site.update(yaml.safe_load(vault_example.read_text()) or {})
    hostvars = {}
    for host in groups["all"]:
        # site keys stay in model["site"] only, so tests can change them in one place
        hv = {k: v for k, v in site.items() if k not in hi.SITE_KEYS}
        for g, members in groups.items():
            if g != "all" and host in members:
                for candidate in (inv / "group_vars" / g, inv / "group_vars" / f"{g}.yml"):
                    if candidate.exists():
                        hv.update(load_yaml_dir(candidate))
        inline = _find_inline(hosts_doc["all"], host)
        hv.update(inline)
        hfile = inv / "host_vars" / f"{host}.yml"
        if hfile.exists():
            hv.update(load_yaml_dir(hfile))
        hostvars[host] = hv
    return {"groups": groups, "hostvars": hostvars,
            "site": {k: v for k, v in site.items() if k in hi.SITE_KEYS}}


def _find_inline(node: dict, host: str) -> dict:
    node = node or {}
    found = dict((node.get("hosts") or {}).get(host) or {})
    for cnode in (node.get("children") or {}).values():
        found.update(_find_inline(cnode, host))
    return found


_EXAMPLE_MODEL = model_from_dir(EXAMPLE)


@pytest.fixture
def model() -> dict:
    """A fresh deep copy of the example inventory's model."""
    return copy.deepcopy(_EXAMPLE_MODEL)


def engine(model: dict, host: str, index: int = 0) -> dict:
    return model["hostvars"][host]["engines"][index]


def find(errs, host: str, field: str) -> list:
    return [e for e in errs if e.host == host and e.field == field]


def assert_error(errs, host: str, field: str, *reason_parts: str):
    """Exactly the (host, field) pair is reported, and its reason mentions every part."""
    hits = find(errs, host, field)
    assert hits, f"no error for {host}: {field}; got:\n" + "\n".join(map(str, errs))
    for part in reason_parts:
        assert any(part.lower() in e.reason.lower() for e in hits), \
            f"{host}: {field}: reason lacks {part!r}: {[e.reason for e in hits]}"
    return hits


def run_playbook(*args: str, cwd: Path = REPO, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PYTHONDONTWRITEBYTECODE": "1",
                "ANSIBLE_LOCAL_TEMP": str(Path(os.environ.get("TMPDIR", "/tmp")) / "ansible-local-tests")})
    env.pop("ANSIBLE_CONFIG", None)
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def write_inventory(dest: Path, model: dict) -> Path:
    """Write a model back as an inventory directory (hosts.yml + group_vars/all + host_vars)."""
    (dest / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (dest / "host_vars").mkdir(exist_ok=True)
    groups = model["groups"]
    tree = {"all": {"children": {g: {"hosts": {h: None for h in hs}}
                                 for g, hs in groups.items() if g not in ("all", "ungrouped") and hs}}}
    (dest / "hosts.yml").write_text(yaml.safe_dump(tree, sort_keys=False))
    (dest / "group_vars" / "all" / "site.yml").write_text(yaml.safe_dump(model["site"], sort_keys=False))
    for host, hv in model["hostvars"].items():
        own = {k: v for k, v in hv.items() if k not in model["site"] and not k.startswith("ansible_")}
        (dest / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(own, sort_keys=False))
    return dest
