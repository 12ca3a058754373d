"""Cloud routes in the config and the policy: privacy by construction (issue 18)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

from cloud_rig import cloud_config
from router_app.decision.config import parse_dict, validate_dict
from router_app.decision.policy import Policy, decide, format_explain, view_from_chat
from router_app.errors import ApiError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL = "http://127.0.0.1:9/v1"


@pytest.fixture
def cfg(tmp_path):
    return cloud_config(LOCAL, "https://api.anthropic.com/v1", "https://api.openai.com/v1", tmp_path)


def errors(cfg) -> dict:
    return {e.path: e.message for e in validate_dict(copy.deepcopy(cfg))}


def policy(cfg) -> Policy:
    c, errs = parse_dict(copy.deepcopy(cfg))
    assert not errs, errs
    return Policy(c)


def view(text="hi", model="homelab/auto", image=False, route_header=None):
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,x"}}] \
        if image else text
    return view_from_chat({"model": model, "messages": [{"role": "user", "content": content}]}, route_header)


def test_the_rig_config_is_valid(cfg):
    assert errors(cfg) == {}


@pytest.mark.parametrize("mutate, path, words", [
    (lambda c: c["routes"]["claude"].pop("provider"), "routes.claude.provider", "needs a provider"),
    (lambda c: c["routes"]["claude"].pop("api_key_env"), "routes.claude.api_key_env", "api_key_env"),
    (lambda c: c["routes"]["claude"].update(url="http://api.anthropic.com/v1"), "routes.claude.url", "https"),
    (lambda c: c["routes"]["mouth"].update(provider="openai"), "routes.mouth.provider", "kind: cloud"),
    (lambda c: c["routes"]["mouth"].update(failover="claude"), "routes.mouth.failover", "never a spill or failover"),
    (lambda c: c["routes"]["mouth"].update(spill="gpt"), "routes.mouth.spill", "never a spill or failover"),
    (lambda c: c["buckets"]["vision"].update(route="claude"), "buckets.vision.route", "send_images"),
    (lambda c: c["buckets"].update(camera_alerts={"route": "gpt"}), "buckets.camera_alerts.route", "send_images"),
    (lambda c: c["routes"]["claude"].update(vision=True), "routes.claude.vision", "send_images"),
    (lambda c: c.update(embeddings={"route": "gpt"}), "embeddings.route", "stay local"),
    (lambda c: c["routes"]["gpt"].update(model="gpt-99"), "routes.gpt.model", "no price"),
    (lambda c: c["cloud"].update(compare_to="nobody/nothing"), "cloud.compare_to", "price table"),
    (lambda c: c["cloud"]["budgets"].update(ide={"usd_per_week": 3}), "cloud.budgets.ide.usd_per_week",
     "unknown key"),
])
def test_validation_refuses_bad_cloud_settings(cfg, mutate, path, words):
    mutate(cfg)
    errs = errors(cfg)
    assert path in errs and words in errs[path], errs


def test_flags_allow_what_they_name(cfg):
    cfg["routes"]["claude"]["cloud"] = {"send_images": True, "fallback_target": True}
    cfg["routes"]["claude"]["vision"] = True
    cfg["routes"]["mouth"]["failover"] = "claude"
    cfg["buckets"]["vision"]["route"] = "claude"
    cfg["routes"]["gpt"]["url"] = "http://localhost:8443/v1"     # loopback (a tunnel) may be plain http
    assert errors(cfg) == {}


def test_cloud_needs_a_whitelist_naming_it(cfg):
    p = policy(cfg)
    for v in (view(model="claude-sonnet-4-20250514"), view(model="cloud/claude"), view(route_header="claude")):
        with pytest.raises(ApiError) as ei:
            decide(p, v)                                  # no key / a key without a whitelist
        assert ei.value.status == 403 and ei.value.code == "cloud_route_forbidden"
        with pytest.raises(ApiError):
            decide(p, v, allowed_routes=frozenset({"mouth", "brain", "gpt"}))   # whitelisted, but not this one
    d = decide(p, view(model="cloud/claude"), allowed_routes=frozenset({"claude"}))
    assert (d.route, d.reason, d.pin) == ("claude", "model_pin", "route")
    d = decide(p, view(route_header="gpt"), allowed_routes=frozenset({"gpt"}))
    assert (d.route, d.reason) == ("gpt", "header_pin") and d.cloud["gpt"] == "openai"


def test_bucket_mapping_reaches_cloud_only_for_whitelisted_keys(cfg):
    p = policy(cfg)
    d = decide(p, view("review this contract"), allowed_routes=frozenset({"claude", "mouth", "brain"}))
    assert d.route == "claude" and d.bucket == "legal" and "mapped" in d.cloud["why"]
    d = decide(p, view("review this contract"))          # no whitelist: the house answers
    assert d.route == "brain" and "claude" not in d.cloud and d.path == ["claude"]


def test_auto_routing_never_lands_on_cloud_without_a_mapping(cfg):
    p = policy(cfg)
    every = frozenset(cfg["routes"])
    for text in ("hello", "what now", "a long " * 9000):
        d = decide(p, view(text), allowed_routes=every)
        assert d.route in ("mouth", "brain") and d.cloud == {}
    # a failover chain never reaches a cloud route (validation refuses it unless the route opts in)
    d = decide(p, view("hello"), drained={"mouth"}, allowed_routes=every)
    assert d.route == "brain"


def test_homelab_auto_in_a_key_whitelist_means_local_routes(cfg):
    from router_app.access.controller import resolve_models
    c, _ = parse_dict(copy.deepcopy(cfg))
    assert resolve_models(["homelab/auto"], c)[0] == {"mouth", "brain"}
    assert resolve_models(["homelab/auto", "cloud/claude"], c)[0] == {"mouth", "brain", "claude"}


def test_images_never_go_to_a_cloud_route_without_the_flag(cfg):
    p = policy(cfg)
    with pytest.raises(ApiError) as ei:
        decide(p, view(model="cloud/claude", image=True), allowed_routes=frozenset({"claude"}))
    assert ei.value.status == 400 and ei.value.code == "image_to_cloud_refused"
    cfg["routes"]["claude"].update(vision=True, cloud={"send_images": True})
    d = decide(policy(cfg), view(model="cloud/claude", image=True), allowed_routes=frozenset({"claude"}))
    assert d.route == "claude" and d.has_image


def test_explain_says_when_and_why_a_request_leaves_the_house(cfg, tmp_path):
    p = policy(cfg)
    assert "leaves the house: no" in format_explain(decide(p, view("hello")))
    out = format_explain(decide(p, view(model="cloud/claude"), allowed_routes=frozenset({"claude"})))
    assert "leaves the house: YES, to 'claude' (anthropic) because the request names it as its model" in out
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": ROOT}

    def explain(*args):
        return subprocess.run([sys.executable, "-m", "router_app", "explain", "--config", str(path), *args],
                              capture_output=True, text=True, env=env, timeout=60)
    r = explain("--allow", "claude", "--allow", "brain", "review this contract")
    assert r.returncode == 0 and "leaves the house: YES, to 'claude' (anthropic) because bucket 'legal'" in r.stdout
    r = explain("review this contract")
    assert r.returncode == 0 and "route:    brain" in r.stdout and "leaves the house: no" in r.stdout
    r = explain("--header", "X-Homelab-Route=gpt", "hi")
    assert r.returncode == 3 and "cloud_route_forbidden" in r.stdout
    r = explain("--json", "--allow", "gpt", "--model", "gpt-4o-mini", "hi")
    assert json.loads(r.stdout)["cloud"]["gpt"] == "openai"
