"""The real Debian caddy binary in front of a test router, with the Caddyfile rendered from roles/caddy's own
template and defaults by ansible-playbook (connection local), on loopback, plain HTTP."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import httpx

from hub_rig import BIN, ROOT, free_port

PLAY = """---
- name: Render the caddy role's Caddyfile for a loopback test
  hosts: localhost
  gather_facts: false
  vars_files: [{defaults}]
  tasks:
    - name: Caddyfile
      ansible.builtin.template:
        src: {template}
        dest: {dest}
        mode: "0600"
"""


class CaddyFront:
    def __init__(self, tmp: pathlib.Path, upstream_port: int, **overrides):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.caddyfile = tmp / "Caddyfile"
        extra = {"caddy_site_addresses": [self.url], "caddy_http_port": self.port, "caddy_https_port": free_port(),
                 "caddy_admin_listen": "off", "caddy_tls_mode": "acme", "caddy_acme_email": "t@example.invalid",
                 "caddy_acme_ca": "", "caddy_internal_paths": [], "caddy_site_extra_lines": [],
                 "_caddy_allowed": ["127.0.0.1/32"], "_caddy_all_extra_sites": [], "caddy_mcp_upstream": "",
                 "caddy_hub_agent_sources": ["127.0.0.1/32"], "caddy_upstream": f"127.0.0.1:{upstream_port}",
                 "ansible_python_interpreter": sys.executable,
                 **overrides}
        (tmp / "caddy-vars.json").write_text(json.dumps(extra))
        (tmp / "caddy-play.yml").write_text(PLAY.format(defaults=ROOT / "roles/caddy/defaults/main.yml",
                                                        template=ROOT / "roles/caddy/templates/Caddyfile.j2",
                                                        dest=self.caddyfile))
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        out = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                              "-e", f"@{tmp / 'caddy-vars.json'}", str(tmp / "caddy-play.yml")],
                             capture_output=True, text=True, env=env, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        self.proc = None

    def start(self) -> None:
        caddy = shutil.which("caddy")
        assert caddy, "the Debian caddy package is needed (make deps)"
        env = dict(os.environ, XDG_DATA_HOME=str(self.tmp / "caddy-data"), XDG_CONFIG_HOME=str(self.tmp / "caddy-cfg"),
                   HOME=str(self.tmp))
        self.proc = subprocess.Popen([caddy, "run", "--config", str(self.caddyfile), "--adapter", "caddyfile"],
                                     env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.tmp / "caddy.log", "ab"))
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.tmp / "caddy.log").read_text()[-3000:]
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("caddy did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def post_many(url: str, n: int, threads: int = 3, **kw):
    """n POSTs in each of `threads` threads, each on a new connection as httpx.post makes -> Counter of
    (status, error code) per answer and "<exception>: <message>" per failure (none is left out)."""
    import collections
    import threading

    got = collections.Counter()

    def run():
        for _ in range(n):
            try:
                r = httpx.post(url, timeout=30, **kw)
                got[(r.status_code, r.json()["error"]["code"])] += 1
            except Exception as exc:   # noqa: BLE001 - every failure is counted and reported
                got[f"{type(exc).__name__}: {exc}"] += 1
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(300)
    return got
