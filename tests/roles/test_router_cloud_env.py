"""The router role writes cloud provider keys (vault_cloud_api_keys) into its 0600 environment file only, under each
cloud route's api_key_env, and its preflight names a cloud route without a key (issue 18)."""
from __future__ import annotations

import pathlib

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "router"

CONFIG = {"routes": {
    "mouth": {"url": "http://127.0.0.1:1/v1", "model": "m", "api_key_env": "HOMELAB_ROUTE_MOUTH_API_KEY"},
    "claude": {"kind": "cloud", "provider": "anthropic", "url": "https://api.anthropic.com/v1", "model": "c",
               "api_key_env": "HOMELAB_ROUTE_CLAUDE_API_KEY"},
    "gpt": {"kind": "cloud", "provider": "openai", "url": "https://api.openai.com/v1", "model": "g",
            "api_key_env": "HOMELAB_ROUTE_GPT_API_KEY"},
}}


def templar(**extra) -> Templar:
    variables = {"ansible_managed": "managed", "router_admin_key_env": "ADMIN", "router_admin_key": "adm",
                 "_router_config": CONFIG, "router_upstream_api_keys": {"mouth": "local-key"},
                 "router_cloud_api_keys": {"claude": "sk-ant-x$y", "mouth": "never-used"},
                 "router_environment": {}, **extra}
    return Templar(loader=DataLoader(), variables=variables)


def test_cloud_keys_land_in_the_env_file():
    text = templar().template(trust_as_template((ROLE / "templates" / "router.env.j2").read_text()))
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert any(ln.startswith('HOMELAB_ROUTE_CLAUDE_API_KEY="sk-ant-x') for ln in lines)
    assert 'HOMELAB_ROUTE_MOUTH_API_KEY="local-key"' in lines           # a local route keeps its engine key
    assert not any("GPT" in ln for ln in lines)                         # no key, no line
    assert "never-used" not in text                                     # cloud keys only for cloud routes


def test_the_env_file_task_is_0600_and_no_log():
    tasks = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    t = next(t for t in tasks if t.get("ansible.builtin.template", {}).get("src") == "router.env.j2")
    assert t["ansible.builtin.template"]["mode"] == "0600" and t["no_log"] is True


def test_preflight_names_a_cloud_route_without_a_key():
    tasks = yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text())
    t = next(t for t in tasks if "cloud route has its provider key" in t["name"])
    expr = t["vars"]["_router_cloud_missing"]
    assert list(templar().template(trust_as_template(expr))) == ["gpt"]
    assert list(templar(router_cloud_api_keys={"claude": "a", "gpt": "b"}).template(trust_as_template(expr))) == []
