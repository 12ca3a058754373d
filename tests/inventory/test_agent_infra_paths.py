"""homelab_agent_infra_paths (roles/homelab_agent): the allowlist of files the hub's list_files/read_file may fetch.
Validation refuses what the agent would refuse (the rules import router_app/agent/files.py), with host+field+reason."""
from __future__ import annotations

import copy
import sys

import pytest

from conftest import REPO, _EXAMPLE_MODEL, hi

sys.path.insert(0, str(REPO / "plugins" / "filter"))
import homelab_site_roles as site  # noqa: E402


def _problems(host: str, value) -> list:
    model = copy.deepcopy(_EXAMPLE_MODEL)
    model["hostvars"][host]["homelab_agent_infra_paths"] = value
    return [p for p in site.site_role_problems(model) if p[1].startswith("homelab_agent_infra_paths")]


def test_the_default_allowlist_validates():
    assert _problems("ubuntu-4090", site.literal_defaults("homelab_agent")["homelab_agent_infra_paths"]) == []


@pytest.mark.parametrize("value,field,fragment", [
    ("/etc/homelab", "homelab_agent_infra_paths", "must be a list"),
    ({"a": "/etc"}, "homelab_agent_infra_paths", "must be a list"),
    (["etc/homelab"], "homelab_agent_infra_paths[0]", "must be absolute"),
    (["/etc/homelab/../shadow"], "homelab_agent_infra_paths[0]", "'..'"),
    (["/etc/caddy/", "/etc//x"], "homelab_agent_infra_paths[0]", "not normalized"),
    (["/etc/caddy/Caddyfile", 7], "homelab_agent_infra_paths[1]", "non-empty string"),
    (["/"], "homelab_agent_infra_paths[0]", "never allowlisted"),
    (["/root/.ssh"], "homelab_agent_infra_paths[0]", "never allowlisted"),
    (["/etc/shadow"], "homelab_agent_infra_paths[0]", "looks like a secret"),
    (["/etc/homelab/vllm-eyes.env"], "homelab_agent_infra_paths[0]", "looks like a secret"),
    (["/etc/ssh/ssh_host_ed25519_key"], "homelab_agent_infra_paths[0]", "looks like a secret"),
    (["/etc/ssl/private/gateway.key"], "homelab_agent_infra_paths[0]", "looks like a secret"),
])
def test_broken_allowlists_are_refused_with_host_field_reason(value, field, fragment):
    got = _problems("ubuntu-4090", value)
    assert got and got[0][0] == "ubuntu-4090" and got[0][1] == field and fragment in got[0][2], got
    assert "(role homelab_agent)" in got[0][2]


def test_only_agent_hosts_are_checked():
    assert _problems("win-5090", ["relative"]) == []        # no agent on the Windows node
    assert _problems("ai-gateway", ["relative"])[0][0] == "ai-gateway"


def test_validation_reports_it_like_every_inventory_error():
    model = copy.deepcopy(_EXAMPLE_MODEL)
    model["hostvars"]["spark"]["homelab_agent_infra_paths"] = ["/etc/../etc/shadow"]
    errs = [str(e) for e in hi.check_model(model, None)]
    assert any(e.startswith("spark: homelab_agent_infra_paths[0]: ") and "'..'" in e for e in errs), errs
