"""The read-only Proxmox view (GET /admin/proxmox/guests) through proxmoxer, against the repository's Proxmox VE API
emulator (tests/emulators/proxmox_emulator.py, a TLS server on 127.0.0.1 with a throw-away CA)."""
from __future__ import annotations

import sys

import pytest
from hub_rig import ROOT, Rig

sys.path.insert(0, str(ROOT / "tests" / "emulators"))
from emulator_base import TLSServer, make_pki  # noqa: E402
from proxmox_emulator import ProxmoxEmulator  # noqa: E402

TOKEN = "3f1c2a6e-0000-4000-8000-00000000beef"


@pytest.fixture()
def pve(tmp_path):
    pki = make_pki(tmp_path / "pki")
    app = ProxmoxEmulator(tokens={"homelab-ro@pve!hub": TOKEN})
    app.settings["task_seconds"] = 0.0
    server = TLSServer(app, pki.server_cert, pki.server_key).start()
    yield app, server, pki
    server.stop()


def _rig(tmp_path, server, pki, token=TOKEN):
    def mutate(cfg):
        cfg["hub"]["proxmox"] = {"host": "127.0.0.1", "port": server.port, "user": "homelab-ro@pve",
                                 "token_name": "hub", "token_value_env": "HUB_TEST_PVE_TOKEN",
                                 "ca_file": str(pki.ca_cert)}
    r = Rig(tmp_path / "rig", mutate=mutate, extra_env={"HUB_TEST_PVE_TOKEN": token})
    r.start_router()
    return r


def test_guests_and_their_state(tmp_path, pve):
    app, server, pki = pve
    from proxmoxer import ProxmoxAPI     # seed two guests through the API, as Ansible's proxmox_lxc would
    api = ProxmoxAPI("127.0.0.1", port=server.port, user="homelab-ro@pve", token_name="hub", token_value=TOKEN,
                     verify_ssl=str(pki.ca_cert))
    for vmid, host in ((201, "hub"), (200, "ai-gateway")):
        api.nodes("pve").lxc.post(vmid=vmid, hostname=host, ostemplate=app.settings["templates"][0])
    api.nodes("pve").lxc(200).status.start.post()
    (tmp_path / "rig").mkdir()
    rig = _rig(tmp_path, server, pki)
    try:
        before = app.counters["writes"]
        r = rig.admin.get("/admin/proxmox/guests")
        assert r.status_code == 200, r.text
        guests = {g["vmid"]: g for g in r.json()["guests"]}
        assert guests[200]["name"] == "ai-gateway" and guests[200]["status"] == "running"
        assert guests[201]["status"] == "stopped" and guests[201]["type"] == "lxc"
        assert app.counters["writes"] == before                      # read-only
        assert rig.admin.get("/admin/proxmox/guests", headers={"Authorization": "Bearer x"}).status_code == 401
    finally:
        rig.close()


def test_wrong_token_is_a_clear_502(tmp_path, pve):
    _app, server, pki = pve
    (tmp_path / "rig").mkdir()
    rig = _rig(tmp_path, server, pki, token="wrong")
    try:
        r = rig.admin.get("/admin/proxmox/guests")
        assert r.status_code == 502 and r.json()["error"]["code"] == "proxmox_unreachable"
        assert "401" in r.json()["error"]["message"]
    finally:
        rig.close()
