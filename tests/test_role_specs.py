"""Every role's defaults/main.yml and meta/argument_specs.yml (entry point `main`) declare the same variables.

Roles whose name starts with `_` (internal helpers) are skipped when they have no defaults.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"


def _roles() -> list[Path]:
    out = []
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir()):
        if role.name.startswith("_") and not (role / "defaults" / "main.yml").exists():
            continue
        out.append(role)
    return out


def _load(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("role", _roles(), ids=lambda p: p.name)
def test_defaults_match_argument_specs(role: Path):
    defaults = _load(role / "defaults" / "main.yml") or {}
    assert isinstance(defaults, dict), f"{role.name}: defaults/main.yml must be a mapping"
    specs_file = role / "meta" / "argument_specs.yml"
    specs = _load(specs_file)
    assert specs is not None, f"{role.name}: meta/argument_specs.yml is missing"
    main = ((specs or {}).get("argument_specs") or {}).get("main")
    assert isinstance(main, dict), f"{role.name}: meta/argument_specs.yml has no `main` entry point"
    options = main.get("options") or {}
    missing_in_specs = sorted(set(defaults) - set(options))
    missing_in_defaults = sorted(set(options) - set(defaults))
    assert not missing_in_specs and not missing_in_defaults, (
        f"{role.name}: defaults without an argument spec: {missing_in_specs}; "
        f"argument specs without a default: {missing_in_defaults}")
