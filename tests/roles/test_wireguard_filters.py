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
