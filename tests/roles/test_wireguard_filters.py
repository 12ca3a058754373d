"""Unit tests for roles/wireguard/filter_plugins/wireguard.py (pure functions, no hosts)."""

import base64
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "roles" / "wireguard" / "filter_plugins" / "wireguard.py"
_spec = importlib.util.spec_from_file_location("wireguard_filters", _PATH)
wg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wg)

KEY = base64.b64encode(bytes(range(32))).decode()


def test_network_of_interface_address():
    assert wg.wireguard_network("10.99.0.1/24") == "10.99.0.0/24"
    assert wg.wireguard_network("fd00:99::1/64") == "fd00:99::/64"


@pytest.mark.parametrize("value,ok", [
    ("10.99.0.1/24", True), ("10.99.0.1", False), ("10.99.0.300/24", False), ("", False), ("fd00::1/64", True),
])
def test_is_interface(value, ok):
    assert wg.wireguard_is_interface(value) is ok


@pytest.mark.parametrize("value,ok", [
    ("10.99.0.10/32", True), ("10.99.0.10", True), ("192.0.2.0/24", True), ("10.1.2.0/33", False), ("nope", False),
])
def test_is_network(value, ok):
    assert wg.wireguard_is_network(value) is ok


@pytest.mark.parametrize("value,ok", [
    (KEY, True), (KEY[:-1], False), ("A" * 43 + "=", True), ("!" * 43 + "=", False),
    (base64.b64encode(bytes(31)).decode(), False), ("", False),
])
def test_is_key(value, ok):
    assert wg.wireguard_is_key(value) is ok


def test_as_list():
    assert wg.wireguard_as_list("10.0.0.1/32, 10.0.0.2/32") == ["10.0.0.1/32", "10.0.0.2/32"]
    assert wg.wireguard_as_list(["10.0.0.1/32", " "]) == ["10.0.0.1/32"]
    assert wg.wireguard_as_list(None) == []


def test_filters_registered():
    names = set(wg.FilterModule().filters())
    assert {"wireguard_network", "wireguard_is_key", "wireguard_is_network", "wireguard_as_list"} <= names


# ------------------------------------------------------------------ mesh
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()
KEY_C = base64.b64encode(bytes(range(2, 34))).decode()
MESH = [
    {"name": "hub", "address": "10.99.0.1/24", "endpoint": "10.30.0.10:51820", "public_key": KEY,
     "road_warriors": ["10.99.0.10/32", "10.99.0.11/32"], "routed_networks": [], "persistent_keepalive": 25},
    {"name": "cabin", "address": "10.99.0.2/24", "endpoint": "cabin.example.net:51820", "public_key": KEY_B,
     "road_warriors": [], "routed_networks": ["192.168.50.0/24"], "persistent_keepalive": 25},
    {"name": "spark", "address": "10.99.0.3/24", "endpoint": "10.20.0.13:51820", "public_key": KEY_C,
     "road_warriors": "10.99.0.12/32", "routed_networks": [], "persistent_keepalive": 0},
]


def test_mesh_every_other_host_is_a_peer_with_its_routes():
    got = wg.wireguard_mesh_peers(MESH, "cabin")
    assert got["missing"] == []
    assert [p["name"] for p in got["peers"]] == ["hub", "spark"]  # never itself, sorted
    hub = got["peers"][0]
    assert hub == {"name": "hub", "public_key": KEY, "endpoint": "10.30.0.10:51820", "persistent_keepalive": 25,
                   "allowed_ips": ["10.99.0.1/32", "10.99.0.10/32", "10.99.0.11/32"]}
    assert got["peers"][1]["allowed_ips"] == ["10.99.0.3/32", "10.99.0.12/32"]
    assert "persistent_keepalive" not in got["peers"][1]
    assert wg.wireguard_mesh_peers(MESH, "hub")["peers"][0]["allowed_ips"] == ["10.99.0.2/32", "192.168.50.0/24"]


def test_mesh_of_one_is_empty_and_missing_keys_are_reported():
    assert wg.wireguard_mesh_peers(MESH[:1], "hub") == {"peers": [], "missing": []}
    fresh = [dict(MESH[0]), dict(MESH[1], public_key="")]
    assert wg.wireguard_mesh_peers(fresh, "hub") == {"peers": [], "missing": ["cabin"]}


def test_mesh_refuses_overlapping_routes():
    clash = [MESH[0], dict(MESH[1], road_warriors=["10.99.0.10/32"])]
    with pytest.raises(ValueError, match="10.99.0.10/32 is claimed by both"):
        wg.wireguard_mesh_peers(clash + [MESH[2]], "spark")
