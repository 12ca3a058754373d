"""Cloud routes in the inventory (issue 18): validation names host, field and reason for bad cloud settings."""
from __future__ import annotations

import pytest

from conftest import assert_error, hi

from router_app.decision import inventory as ri

CLAUDE = {"provider": "anthropic", "url": "https://api.anthropic.com/v1", "model": "claude-sonnet-4-20250514",
          "aliases": ["cloud/claude"]}


def with_cloud(m_, **route):
    model = m_
    model["site"]["router_cloud_routes"] = {"claude": {**CLAUDE, **route}}
    for hv in model["hostvars"].values():
        hv["vault_cloud_api_keys"] = {"claude": "sk-ant-CHANGE-ME"}
    return model


def errors(model):
    return hi.check_model(model, None)


def test_a_cloud_route_and_a_bucket_mapped_to_it_validate(model):
    with_cloud(model)
    model["site"]["router_buckets"]["legal"] = {"route": "claude", "keywords": ["contract"]}
    model["site"]["router_cloud"] = {"compare_to": "claude", "budgets": {"default": {"usd_per_month": 20}}}
    assert errors(model) == []
    gpu = {h: model["hostvars"][h] for h in model["groups"]["gpu_nodes"]}
    cfg = ri.compile_router_config(gpu, buckets=model["site"]["router_buckets"],
                                   cloud_routes=model["site"]["router_cloud_routes"],
                                   cloud=model["site"]["router_cloud"])
    r = cfg["routes"]["claude"]
    assert r["kind"] == "cloud" and r["terminal"] is True and r["api_key_env"] == "HOMELAB_ROUTE_CLAUDE_API_KEY"
    assert cfg["cloud"]["compare_to"] == "claude"


@pytest.mark.parametrize("mutate, field, reason", [
    (lambda m: with_cloud(m, url="http://api.anthropic.com/v1"), "router_cloud_routes.claude.url", "https"),
    (lambda m: with_cloud(m, provider=None), "router_cloud_routes.claude.provider", "provider"),
    (lambda m: with_cloud(m, model="claude-unknown-9"), "router_cloud_routes.claude.model", "no price"),
    (lambda m: with_cloud(m, vision=True), "router_cloud_routes.claude.vision", "send_images"),
    (lambda m: with_cloud(m, cloud={"send_imgs": True}), "router_cloud_routes.claude.cloud.send_imgs", "unknown key"),
    (lambda m: (with_cloud(m), m["site"]["router_buckets"]["vision"].update(route="claude")),
     "router_buckets.vision.route", "vision"),
    (lambda m: (with_cloud(m), m["site"]["router_buckets"].update(camera_events={"route": "claude"})),
     "router_buckets.camera_events.route", "send_images"),
    (lambda m: (with_cloud(m), m["site"].update(router_cloud={"budgets": {"x": {"usd_per_week": 1}}})),
     "router_cloud.budgets.x.usd_per_week", "unknown key"),
    (lambda m: (with_cloud(m), [hv.update(vault_cloud_api_keys={}) for hv in m["hostvars"].values()]),
     "router_cloud_routes.claude", "no key in vault_cloud_api_keys"),
    (lambda m: (with_cloud(m), [hv["vault_cloud_api_keys"].update(gpt="x") for hv in m["hostvars"].values()]),
     "vault_cloud_api_keys.gpt", "not in router_cloud_routes"),
])
def test_bad_cloud_settings_name_host_field_reason(model, mutate, field, reason):
    mutate(model)
    assert_error(errors(model), "ai-gateway", field, reason)
