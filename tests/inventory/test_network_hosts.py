"""Broken-inventory cases for the DHCP reservations and DNS records opnsense_vlans derives from every host
(homelab_mac, homelab_address, the host name): each names host, field and reason."""
from __future__ import annotations

import pytest

from conftest import assert_error, hi


def errors(model):
    return hi.check_model(model)


def test_example_carries_macs_and_validates(model):
    assert errors(model) == []
    assert model["hostvars"]["ubuntu-4090"]["homelab_mac"] == "02:00:0a:14:00:0b"


@pytest.mark.parametrize("host,change,field,parts", [
    ("spark", {"homelab_mac": "02:00:0a:14:00"}, "homelab_mac", ("is not a MAC address", "opnsense_vlans")),
    ("spark", {"homelab_mac": 42}, "homelab_mac", ("is not a MAC address",)),
    ("ubuntu-6000", {"homelab_mac": "02:00:0A:14:00:0B"}, "homelab_mac", ("also the MAC of ubuntu-4090",)),
])
def test_broken_macs(model, host, change, field, parts):
    model["hostvars"][host].update(change)
    assert_error(errors(model), host, field, *parts)


def test_mac_needs_an_address_in_a_vlan(model):
    # a host that no layer manages (only DHCP/DNS): the address must still lie in a VLAN to be reserved
    model["groups"]["all"].append("printer")
    model["hostvars"]["printer"] = {"homelab_mac": "02:00:0a:28:00:09", "homelab_address": "192.168.77.5"}
    assert_error(errors(model), "printer", "homelab_address", "none of the VLAN subnets", "DHCP reservation")
    del model["hostvars"]["printer"]["homelab_address"]
    assert_error(errors(model), "printer", "homelab_address", "is required for the DHCP reservation")


def test_an_address_outside_its_vlan_is_reported_once(model):
    hv = model["hostvars"]["spark"]
    hv["homelab_address"] = "192.168.77.5"
    hits = [e for e in errors(model) if (e.host, e.field) == ("spark", "homelab_address")]
    assert len(hits) == 1 and "outside VLAN 'ai'" in hits[0].reason


def test_host_name_must_be_a_dns_label(model):
    model["groups"]["all"].append("gpu_box")
    model["hostvars"]["gpu_box"] = {"homelab_address": "10.40.0.50", "homelab_vlan": "lan"}
    assert_error(errors(model), "gpu_box", "inventory_hostname", "not a DNS label", "<host>.<domain>")


def test_no_firewall_no_network_rules(model):
    model["groups"]["firewall"] = []
    model["hostvars"]["spark"]["homelab_mac"] = "nope"
    assert not any(e.field == "homelab_mac" for e in errors(model))


# ------------------------------------------------------------------ the WireGuard mesh
def _second_wireguard_host(model, **hv):
    model["groups"]["wireguard"].append("spark")
    model["hostvars"]["spark"].update(hv)


def test_mesh_of_two_with_own_addresses_validates(model):
    model["hostvars"]["ai-gateway"]["wireguard_address"] = "10.99.0.1/24"
    _second_wireguard_host(model, wireguard_address="10.99.0.2/24")
    assert [e for e in errors(model) if e.field == "wireguard_address"] == []


def test_mesh_members_need_their_own_tunnel_address(model):
    _second_wireguard_host(model)  # both fall back to the role default 10.99.0.1/24
    assert_error(errors(model), "spark", "wireguard_address", "also the tunnel address of ai-gateway", "mesh")


def test_mesh_shares_one_tunnel_subnet(model):
    model["hostvars"]["ai-gateway"]["wireguard_address"] = "10.99.0.1/24"
    _second_wireguard_host(model, wireguard_address="10.98.0.2/24")
    assert_error(errors(model), "spark", "wireguard_address", "differs from 10.99.0.0/24 of ai-gateway")
