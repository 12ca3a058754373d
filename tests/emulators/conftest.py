"""Fixtures: a throw-away PKI, the OPNsense and Proxmox emulators as TLS servers on 127.0.0.1, and a
runner that drives the repository's real playbooks with the venv's ansible-playbook."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from emulator_base import TLSServer, make_pki  # noqa: E402
from opnsense_emulator import OPNsenseEmulator  # noqa: E402
from proxmox_emulator import ProxmoxEmulator  # noqa: E402

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Running:
    app: object
    server: TLSServer
    ca: Path

    @property
    def port(self) -> int:
        return self.server.port

    def state(self) -> dict:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"{self.server.url}/__emulator__/state", context=ctx, timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture(scope="session")
def _opnsense_server(pki):
    app = OPNsenseEmulator(version="26.7.2", credentials={"homelab-key": "homelab-secret"})
    server = TLSServer(app, pki.server_cert, pki.server_key).start()
    yield Running(app, server, pki.ca_cert)
    server.stop()


@pytest.fixture()
def opnsense(_opnsense_server):
    _opnsense_server.app.reset()
    return _opnsense_server


@pytest.fixture(scope="session")
def _proxmox_server(pki):
    app = ProxmoxEmulator(
        tokens={"ansible@pve!homelab": "3f1c2a6e-0000-4000-8000-000000000001"},
        users={"root@pam": "rootpass"},
    )
    server = TLSServer(app, pki.server_cert, pki.server_key).start()
    yield Running(app, server, pki.ca_cert)
    server.stop()


@pytest.fixture()
def proxmox(_proxmox_server):
    _proxmox_server.app.reset()
    # tasks finish at once so community.proxmox's 1 s poll sleep is not paid on every call
    # (test_emulators.py covers tasks that are still running when first polled)
    _proxmox_server.app.settings["task_seconds"] = 0.0
    return _proxmox_server


@dataclass
class PlaybookResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def recap(self) -> dict:
        return {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                             "unreachable": int(m.group(4)), "failed": int(m.group(5))}
                for m in RECAP_RE.finditer(self.stdout)}

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]


@pytest.fixture()
def run_playbook(tmp_path):
    """run_playbook(playbook, inventory_dict, *extra_args) -> PlaybookResult"""

    def _run(playbook: str, inventory: dict, *args: str, timeout: int = 120) -> PlaybookResult:
        inv = tmp_path / "inventory.yml"
        inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
        env = dict(os.environ)
        env.update({
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            # proxmoxer/requests must not pick up a CA bundle from the caller's environment
            "REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "",
        })
        if os.environ.get("HOMELAB_TEST_CALLBACKS"):  # e.g. ansible.posix.profile_tasks when tuning
            env["ANSIBLE_CALLBACKS_ENABLED"] = os.environ["HOMELAB_TEST_CALLBACKS"]
        env.pop("REQUESTS_CA_BUNDLE")
        env.pop("CURL_CA_BUNDLE")
        cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(REPO / "playbooks" / playbook), *args]
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout)
        return PlaybookResult(proc.returncode, proc.stdout, proc.stderr)

    return _run
