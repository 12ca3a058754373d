"""Broken home automation inventories (roles mosquitto, homelab_ha_runtime, ha_bridge, vision_notifier): validation
names the host, the field and the reason before any host is touched. Plain Python on the example inventory's model
(the same rules the roles' preflights run: plugins/filter/homelab_ha_rules.py); the agreement with the real
preflights is in test_preflight_agreement.py."""
from __future__ import annotations

import sys

import pytest

from conftest import REPO, assert_error, hi

sys.path.insert(0, str(REPO / "plugins" / "filter"))
import homelab_ha_rules as ha  # noqa: E402
import homelab_site_roles as site  # noqa: E402

GW = "ai-gateway"


def _errs(model):
    return hi.check_model(model)


def _ha_errs(model):
    """Only the errors of the home automation roles (so a test sees what it broke, nothing else)."""
    return [e for e in _errs(model) if any(f"(role {r})" in e.reason for r in
                                           ("mosquitto", "homelab_ha_runtime", "ha_bridge", "vision_notifier"))]


def test_the_example_has_no_home_automation_errors(model):
    assert _errs(model) == []
    assert {"mosquitto", "homelab_ha_runtime", "ha_bridge", "vision_notifier"} <= \
        set(site.roles_for_host(model["groups"], GW, model["hostvars"][GW]))
    assert "mosquitto" not in site.roles_for_host(model["groups"], "spark", model["hostvars"]["spark"])


# ---------------------------------------------------------------------------------------------------------
# mosquitto

def test_every_broker_user_needs_a_password_from_the_vault(model):
    model["hostvars"][GW]["vault_mosquitto_passwords"].pop("frigate")
    model["hostvars"][GW]["vault_mosquitto_passwords"]["homeassistant"] = ""
    errs = _ha_errs(model)
    assert_error(errs, GW, "mosquitto_users[3].name", "'frigate' has no password", "vault_mosquitto_passwords")
    assert_error(errs, GW, "mosquitto_users[0].name", "'homeassistant' has no password")
    assert all("CHANGE-ME" not in e.reason for e in errs)  # never the secret values


def test_no_vault_passwords_at_all_fails_every_client(model):
    model["hostvars"][GW].pop("vault_mosquitto_passwords")
    errs = _ha_errs(model)
    assert_error(errs, GW, "ha_bridge_mqtt_password", "is required", "vault_mosquitto_passwords['ha_bridge']")
    assert_error(errs, GW, "vision_notifier_mqtt_password", "vault_mosquitto_passwords['vision_notifier']")
    assert len([e for e in errs if e.field.startswith("mosquitto_users[")]) == 4


@pytest.mark.parametrize("users,field,reason", [
    ([], "mosquitto_users", "non-empty list"),
    ([{"name": "has space", "acl": [{"access": "read", "topic": "#"}]}], "mosquitto_users[0].name", "A-Za-z0-9"),
    ([{"name": "frigate"}], "mosquitto_users[0].acl", "non-empty list"),
    ([{"name": "frigate", "acl": [{"access": "publish", "topic": "#"}]}], "mosquitto_users[0].acl[0].access",
     "read, write or readwrite"),
    ([{"name": "frigate", "acl": [{"access": "read"}]}], "mosquitto_users[0].acl[0].topic", "is required"),
    ([{"name": "frigate", "acl": [{"access": "read", "topic": "#"}]},
      {"name": "frigate", "acl": [{"access": "read", "topic": "#"}]}], "mosquitto_users[1].name", "also"),
])
def test_broker_users_and_acls(model, users, field, reason):
    model["hostvars"][GW]["mosquitto_users"] = users
    assert_error(_ha_errs(model), GW, field, reason)


def test_tls_listener_needs_certificate_key_and_its_own_port(model):
    model["hostvars"][GW].update(mosquitto_tls_enabled=True, mosquitto_tls_port=1883)
    errs = _ha_errs(model)
    assert_error(errs, GW, "mosquitto_tls_cert_file", "is required while mosquitto_tls_enabled")
    assert_error(errs, GW, "mosquitto_tls_key_file", "is required")
    assert_error(errs, GW, "mosquitto_tls_port", "must differ from mosquitto_port")
    model["hostvars"][GW].update(mosquitto_tls_port=8883, mosquitto_tls_cert_file="/etc/ssl/mqtt.crt",
                                 mosquitto_tls_key_file="/etc/ssl/mqtt.key")
    assert _ha_errs(model) == []


def test_tls_without_a_lan_address_binds_nowhere(model):
    model["hostvars"][GW].update(mosquitto_tls_enabled=True, mosquitto_tls_cert_file="/c", mosquitto_tls_key_file="/k",
                                 mosquitto_bind_addresses=[])
    assert_error(_ha_errs(model), GW, "mosquitto_bind_addresses", "TLS listener would bind nowhere")


def test_broker_port_and_firewall_sources(model):
    model["hostvars"][GW].update(mosquitto_port=0, mosquitto_firewall_extra_sources=["not-a-cidr"])
    errs = _ha_errs(model)
    assert_error(errs, GW, "mosquitto_port", "must be a port")
    assert_error(errs, GW, "mosquitto_firewall_sources", "'not-a-cidr' is not an IPv4/IPv6 address or CIDR")
    model["hostvars"][GW].update(mosquitto_port=1883, mosquitto_firewall_sources=[])
    assert_error(_ha_errs(model), GW, "mosquitto_firewall_sources", "homelab_client_cidrs")
    model["hostvars"][GW]["mosquitto_firewall_enabled"] = False
    assert _ha_errs(model) == []


# ---------------------------------------------------------------------------------------------------------
# ha_bridge

@pytest.mark.parametrize("poll", [0, -5, "often"])
def test_poll_interval_must_be_positive(model, poll):
    model["hostvars"][GW]["ha_bridge_poll_interval_s"] = poll
    assert_error(_ha_errs(model), GW, "ha_bridge_poll_interval_s", "must be an integer > 0")


def test_sensors_must_not_expire_between_two_polls(model):
    model["hostvars"][GW].update(ha_bridge_poll_interval_s=30, ha_bridge_expire_after_s=10)
    assert_error(_ha_errs(model), GW, "ha_bridge_expire_after_s", ">= ha_bridge_poll_interval_s", "unavailable")


def test_bridge_hosts_must_be_netdata_hosts_of_the_inventory(model):
    model["hostvars"][GW]["ha_bridge_hosts"] = [{"name": "spark", "label": "Spark"}, {"name": "ghost"},
                                                {"name": "spark"}, {"label": "no name"}]
    errs = _ha_errs(model)
    assert_error(errs, GW, "ha_bridge_hosts[1].name", "'ghost' is no host of group netdata", "spark")
    assert_error(errs, GW, "ha_bridge_hosts[2].name", "also ha_bridge_hosts[0]")
    assert_error(errs, GW, "ha_bridge_hosts[3].name", "is required")
    assert not [e for e in errs if e.field == "ha_bridge_hosts[0].name"]


def test_bridge_follows_a_renamed_netdata_host(model):
    model["hostvars"]["spark"]["netdata_hostname"] = "dgx-spark"
    model["hostvars"][GW]["ha_bridge_hosts"] = [{"name": "dgx-spark"}]
    assert _ha_errs(model) == []
    model["hostvars"][GW]["ha_bridge_hosts"] = [{"name": "spark"}]
    assert_error(_ha_errs(model), GW, "ha_bridge_hosts[0].name", "dgx-spark")


def test_bridge_without_any_netdata_host(model):
    model["groups"]["netdata"] = []
    model["groups"]["netdata_parent"] = []
    assert_error(_ha_errs(model), GW, "ha_bridge_hosts", "group netdata")
    # explicit hosts and no group netdata (a site without the Netdata layer's groups): nothing to check against
    model["hostvars"][GW]["ha_bridge_hosts"] = [{"name": "far-away"}]
    assert _ha_errs(model) == []


# ---------------------------------------------------------------------------------------------------------
# vision_notifier

@pytest.mark.parametrize("key", ["vision_notifier_stage1_model", "vision_notifier_stage2_model"])
def test_stage_models_must_exist_in_the_router_policy(model, key):
    model["hostvars"][GW][key] = "homelab/nope"
    assert_error(_ha_errs(model), GW, key, "'homelab/nope' is not a model the router answers")


@pytest.mark.parametrize("name", ["eyes", "homelab/vision", "homelab/auto", "homelab/coding",
                                  "qwen2.5-vl-7b-router-awq"])
def test_routes_aliases_buckets_and_model_ids_are_known(model, name):
    model["hostvars"][GW]["vision_notifier_stage1_model"] = name
    assert _ha_errs(model) == []


def test_unknown_models_are_fine_when_the_router_routes_them(model):
    model["hostvars"][GW]["vision_notifier_stage1_model"] = "homelab/nope"
    model["site"]["router_route_unknown_models"] = True
    assert _ha_errs(model) == []


def test_ingest_token_required_off_loopback(model):
    model["hostvars"][GW].update(vision_notifier_listen_host="10.30.0.10", vault_vision_notifier_ingest_token="")
    assert_error(_ha_errs(model), GW, "vision_notifier_ingest_token", "is required", "not loopback",
                 "vault_vision_notifier_ingest_token")
    model["hostvars"][GW]["vision_notifier_listen_host"] = "127.0.0.1"
    assert _ha_errs(model) == []


@pytest.mark.parametrize("key,value,reason", [
    ("vision_notifier_drop_confidence", 0, "(0, 1]"),
    ("vision_notifier_drop_confidence", 1.5, "(0, 1]"),
    ("vision_notifier_router_url", "127.0.0.1:4000/v1", "http(s)"),
    ("vision_notifier_router_timeout_s", 0, "> 0"),
    ("vision_notifier_workers", 0, ">= 1"),
    ("vision_notifier_channel_attempts", "x", ">= 1"),
    ("vision_notifier_dedup_window_s", -1, ">= 0"),
    ("vision_notifier_listen_port", 70000, "port"),
])
def test_vision_notifier_settings(model, key, value, reason):
    model["hostvars"][GW][key] = value
    assert_error(_ha_errs(model), GW, key, reason)


# ---------------------------------------------------------------------------------------------------------
# homelab_ha_runtime, and the model-name helper itself

def test_runtime_requirements_must_be_pinned(model):
    model["hostvars"][GW]["homelab_ha_runtime_requirements"] = ["paho-mqtt==2.1.0", "paho-mqtt>=2"]
    assert_error(_ha_errs(model), GW, "homelab_ha_runtime_requirements[1]", "is not pinned")


def test_router_model_names_not_checkable_without_routes():
    assert ha.router_model_names({}, {"gpu_nodes": []}) is None
    assert ha.router_model_names({"n": {"engines": [{"route": "r"}]}}, {"gpu_nodes": ["n"]}, unknown_ok=True) is None
    assert ha.router_model_names({"n": {"engines": [{"route": "r", "aliases": ["a/b"]}]}}, {"gpu_nodes": ["n"]},
                                 {"vision": {}}) == ["a/b", "homelab/auto", "homelab/vision", "r"]
