"""The emulators themselves: the documented semantics the role tests rely on."""

from __future__ import annotations

import time

import proxmoxer
import pytest
import requests


def test_emulator_refuses_writes_without_csrf_and_bad_tickets(proxmox):
    base = f"https://127.0.0.1:{proxmox.port}/api2/json"
    r = requests.post(f"{base}/access/ticket", data={"username": "root@pam", "password": "nope"},
                      verify=str(proxmox.ca), timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{base}/access/ticket", data={"username": "root@pam", "password": "rootpass"},
                      verify=str(proxmox.ca), timeout=10)
    data = r.json()["data"]
    cookies = {"PVEAuthCookie": data["ticket"]}
    assert requests.get(f"{base}/cluster/nextid", cookies=cookies, verify=str(proxmox.ca), timeout=10).json() == {"data": "100"}
    no_csrf = requests.post(f"{base}/nodes/pve/lxc", data={"vmid": 100, "ostemplate": "x"}, cookies=cookies,
                            verify=str(proxmox.ca), timeout=10)
    assert no_csrf.status_code == 401 and "csrf" in no_csrf.reason
    missing = requests.get(f"{base}/nodes/pve/lxc/999/config", cookies=cookies, verify=str(proxmox.ca), timeout=10)
    assert missing.status_code == 500 and "does not exist" in missing.reason
    assert requests.get(f"{base}/version", verify=str(proxmox.ca), timeout=10).status_code == 401


def test_emulator_vlan_settings_semantics(opnsense):
    base = f"https://127.0.0.1:{opnsense.port}/api/interfaces/vlan_settings"
    auth = ("homelab-key", "homelab-secret")
    kw = {"auth": auth, "verify": str(opnsense.ca), "timeout": 10}
    assert requests.post(f"{base}/searchItem", json={}, auth=("homelab-key", "x"), verify=str(opnsense.ca),
                         timeout=10).status_code == 401
    a = requests.post(f"{base}/addItem", json={"vlan": {"if": "vtnet1", "tag": "30", "descr": "a"}}, **kw).json()
    b = requests.post(f"{base}/addItem", json={"vlan": {"if": "vtnet1", "tag": "31"}}, **kw).json()
    assert a["result"] == b["result"] == "saved"
    dup = requests.post(f"{base}/addItem", json={"vlan": {"if": "vtnet1", "tag": "30"}}, **kw).json()
    assert dup == {"result": "failed", "validations": {"vlan.tag": "Tag for this device must be unique."}}
    rows = requests.post(f"{base}/search_item", json={}, **kw).json()  # snake_case accepted too
    assert [r["vlanif"] for r in rows["rows"]] == ["vlan01", "vlan02"] and rows["total"] == 2
    assert rows["rows"][0]["%pcp"] == "Best Effort (0, default)"
    # a legacy-named, assigned VLAN cannot change its tag; an assigned one cannot be deleted
    legacy = requests.post(f"{base}/addItem", json={"vlan": {"if": "vtnet1", "tag": "50", "vlanif": "vtnet1_vlan50"}},
                           **kw).json()
    requests.post(f"https://127.0.0.1:{opnsense.port}/__emulator__/assign",
                  json={"identifier": "opt7", "if": "vtnet1_vlan50", "descr": "LEGACY"}, verify=str(opnsense.ca))
    refused = requests.post(f"{base}/setItem/{legacy['uuid']}", json={"vlan": {"if": "vtnet1", "tag": "51"}}, **kw).json()
    assert refused["validations"]["vlan.tag"].startswith("Interface is assigned and you cannot change the VLAN tag")
    rows = requests.get(f"{base}/searchItem", **kw).json()["rows"]
    assert "vtnet1_vlan50 [LEGACY]" in [r["vlanif"] for r in rows]
    gone = requests.post(f"{base}/delItem/{legacy['uuid']}", **kw)
    assert gone.status_code == 500 and "assigned as an interface" in gone.json()["errorMessage"]
    assert requests.post(f"{base}/delItem/{b['uuid']}", **kw).json() == {"result": "deleted"}
    assert requests.post(f"{base}/reconfigure", **kw).json() == {"status": "ok"}
    st = opnsense.state()
    assert st["counters"]["vlan_reconfigure"] == 1 and len(st["running"]["vlans"]) == 2


@pytest.mark.parametrize("version,nested", [("26.7.2", True), ("22.7.8", False)])
def test_emulator_firmware_status_shape(opnsense, version, nested):
    opnsense.app.settings["version"] = version
    body = requests.get(f"https://127.0.0.1:{opnsense.port}/api/core/firmware/status",
                        auth=("homelab-key", "homelab-secret"), verify=str(opnsense.ca), timeout=10).json()
    assert (body["product"]["product_version"] if nested else body["product_version"]) == version


def test_emulator_tasks_run_then_stop(proxmox):
    proxmox.app.settings["task_seconds"] = 0.3
    api = proxmoxer.ProxmoxAPI("127.0.0.1", port=proxmox.port, user="ansible@pve", token_name="homelab",
                               token_value="3f1c2a6e-0000-4000-8000-000000000001", verify_ssl=str(proxmox.ca))
    vmid = int(api.cluster.nextid.get())
    upid = api.nodes("pve").lxc.create(vmid=vmid, ostemplate="local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                                       hostname="t1", rootfs="local-lvm:2", net0="name=eth0,bridge=vmbr0,ip=dhcp")
    assert api.nodes("pve").tasks(upid).status.get()["status"] == "running"
    assert api.nodes("pve").lxc(vmid).config.get()["lock"] == "create"
    with pytest.raises(proxmoxer.ResourceException):
        api.nodes("pve").lxc(vmid).status.start.post()  # locked while creating
    time.sleep(0.35)
    status = api.nodes("pve").tasks(upid).status.get()
    assert (status["status"], status["exitstatus"]) == ("stopped", "OK")
    cfg = api.nodes("pve").lxc(vmid).config.get()
    assert "lock" not in cfg and cfg["rootfs"] == f"local-lvm:vm-{vmid}-disk-0,size=2G"
    assert cfg["net0"].startswith("name=eth0,bridge=vmbr0,hwaddr=") and cfg["net0"].endswith("ip=dhcp,type=veth")
    with pytest.raises(proxmoxer.ResourceException) as exc:
        api.cluster.nextid.get(vmid=vmid)
    assert exc.value.status_code == 400
    with pytest.raises(proxmoxer.ResourceException) as exc:
        api.nodes("pve").lxc(vmid).config.put(bogus=1)
    assert exc.value.status_code == 400
    assert [r["vmid"] for r in api.cluster.resources.get(type="vm")] == [vmid]
