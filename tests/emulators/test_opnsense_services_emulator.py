"""The OPNsense emulator's Kea DHCPv4 and Unbound endpoints refuse what the real API refuses
(tests/emulators/opnsense_services.py cites the models and pages it follows)."""

from __future__ import annotations

import pytest
import requests


@pytest.fixture()
def api(opnsense):
    kw = {"auth": ("homelab-key", "homelab-secret"), "verify": str(opnsense.ca), "timeout": 10}

    def call(path, body=None):
        r = requests.post(f"https://127.0.0.1:{opnsense.port}/api/{path}", json=body or {}, **kw)
        return r.status_code, r.json()

    return call


def test_kea_subnets_and_reservations(api, opnsense):
    code, s = api("kea/dhcpv4/add_subnet", {"subnet4": {"subnet": "10.0.30.0/24",
                                                          "option_data": {"routers": "10.0.30.1"}}})
    assert code == 200 and s["result"] == "saved"
    assert api("kea/dhcpv4/addSubnet", {"subnet4": {"subnet": "10.0.30.0/24"}})[1]["validations"] == {
        "subnet4.subnet": "Subnet must be unique."}
    assert "subnet4.subnet" in api("kea/dhcpv4/addSubnet", {"subnet4": {"subnet": "10.0.31.1"}})[1]["validations"]
    bad_router = api("kea/dhcpv4/addSubnet", {"subnet4": {"subnet": "10.0.32.0/24",
                                                          "option_data": {"routers": "10.0.32.1/24"}}})[1]
    assert "subnet4.option_data.routers" in bad_router["validations"]

    def reserve(**fields):
        return api("kea/dhcpv4/addReservation", {"reservation": {"subnet": s["uuid"], **fields}})[1]

    ok = reserve(ip_address="10.0.30.10", hw_address="52:54:00:00:30:10", hostname="gpu1")
    assert ok["result"] == "saved"
    assert reserve(ip_address="10.0.30.10", hw_address="52:54:00:00:30:99")["validations"] == {
        "reservation.ip_address": "Duplicate entry exists."}
    assert reserve(ip_address="10.0.30.11", hw_address="52:54:00:00:30:10".upper())["validations"] == {
        "reservation.hw_address": "Duplicate entry exists."}  # case-insensitive, per subnet
    assert reserve(ip_address="10.0.99.1", hw_address="52:54:00:00:99:01")["validations"] == {
        "reservation.ip_address": "Address not in specified subnet."}
    assert reserve(ip_address="10.0.30.12", hw_address="52:54:00")["validations"] == {
        "reservation.hw_address": "Invalid MAC address."}
    orphan = api("kea/dhcpv4/addReservation", {"reservation": {"subnet": "nope", "ip_address": "10.0.30.13"}})[1]
    assert orphan["validations"]["reservation.subnet"] == "Related subnet not found."
    code, in_use = api(f"kea/dhcpv4/delSubnet/{s['uuid']}")
    assert code == 500 and "in use" in in_use["errorMessage"]
    rows = api("kea/dhcpv4/searchReservation")[1]["rows"]
    assert rows[0]["%subnet"] == "10.0.30.0/24" and rows[0]["subnet"] == s["uuid"]
    # written, not yet running
    st = opnsense.state()
    assert st["running"]["kea"]["reservations"] == {}
    assert api("kea/service/reconfigure")[1] == {"status": "ok"}
    assert opnsense.state()["running"]["kea"]["reservations"] == st["kea"]["reservations"]


def test_unbound_host_overrides(api, opnsense):
    ok = api("unbound/settings/addHostOverride",
             {"host": {"hostname": "ai-gateway", "domain": "lan", "rr": "A", "server": "10.30.0.10"}})[1]
    assert ok["result"] == "saved"
    assert api("unbound/settings/add_host_override", {"host": {"hostname": "x", "domain": "lan", "rr": "A"}})[1][
        "validations"] == {"host.server": "The field IP address is required."}
    assert api("unbound/settings/addHostOverride",
               {"host": {"hostname": "x", "domain": "bad_domain!", "server": "10.0.0.1"}})[1]["validations"] == {
        "host.domain": "A valid domain must be specified."}
    assert "host.server" in api("unbound/settings/addHostOverride",
                                {"host": {"hostname": "x", "domain": "lan", "rr": "AAAA", "server": "10.0.0.1"}})[1][
        "validations"]
    assert api("unbound/settings/addHostOverride",
               {"host": {"hostname": "x", "domain": "lan", "rr": "CNAME", "server": "10.0.0.1"}})[1][
        "validations"] == {"host.rr": "Option not in list."}
    rows = api("unbound/settings/searchHostOverride")[1]["rows"]
    assert [(r["hostname"], r["domain"], r["server"]) for r in rows] == [("ai-gateway", "lan", "10.30.0.10")]
    assert api(f"unbound/settings/setHostOverride/{ok['uuid']}", {"host": {"server": "10.30.0.12"}})[1] == {
        "result": "saved"}
    assert opnsense.state()["running"]["unbound"]["hosts"] == {}
    assert api("unbound/service/reconfigure")[1] == {"status": "ok"}
    assert list(opnsense.state()["running"]["unbound"]["hosts"].values())[0]["server"] == "10.30.0.12"
    assert api(f"unbound/settings/delHostOverride/{ok['uuid']}")[1] == {"result": "deleted"}
    assert api(f"unbound/settings/delHostOverride/{ok['uuid']}")[1] == {"result": "not found"}


def test_kea_general_settings(api, opnsense):
    got = api("kea/dhcpv4/get")[1]["dhcpv4"]["general"]
    assert got["enabled"] == "0" and got["interfaces"]["lan"] == {"value": "LAN", "selected": 0}
    assert api("kea/dhcpv4/set", {"dhcpv4": {"general": {"enabled": "1", "interfaces": "lan,opt9"}}})[1] == {
        "result": "failed", "validations": {"dhcpv4.general.interfaces": "Option not in list."}}
    assert api("kea/dhcpv4/set", {"dhcpv4": {"general": {"enabled": "1", "interfaces": "lan"}}})[1] == {
        "result": "saved"}
    assert api("kea/dhcpv4/get")[1]["dhcpv4"]["general"]["interfaces"]["lan"]["selected"] == 1
