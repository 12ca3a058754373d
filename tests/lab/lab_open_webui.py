"""Open WebUI in the lab (tests/lab/lab.py calls these around its converge): the wheelhouse before, the site check
after. Its router key needs nothing from the lab: the example's gateway runs the router and Open WebUI on one host,
so the open_webui role has the router keep the key (`homelab-router keys ensure`) in the same converge.

`lab` is tests/lab/lab.py itself (passed in: no import cycle), `inv` its Lab (the merged inventory).
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

APP = "open-webui"
LINK = "open-webui-wheelhouse.tar"     # in .lab/: inventory/lab/host_vars/ai-gateway.yml names it


def enabled(inv) -> bool:
    return str(inv.hostvars[inv.gateway].get("open_webui_enabled", False)).strip().lower() in ("true", "yes", "1")


def phase_wheelhouse(lab, inv) -> None:
    """tests/tools/build_open_webui_wheelhouse.sh: the wheels built once on this machine (cached in
    ~/.cache/homelab-ai), linked as .lab/open-webui-wheelhouse.tar where the overlay points
    open_webui_wheelhouse_archive, so every converge of the lab (also a test's own) installs from it, not PyPI."""
    if not enabled(inv):
        return
    t = time.monotonic()
    script = lab.REPO / "tests" / "tools" / "build_open_webui_wheelhouse.sh"
    proc = lab.run(["bash", str(script)], capture=True, timeout=1800)
    archive = Path(proc.stdout.strip().splitlines()[-1]).resolve()
    if not archive.is_file():
        raise lab.LabError(f"{script.name} printed {archive}, which is not a file")
    link = lab.STATE / LINK
    lab.STATE.mkdir(mode=0o700, exist_ok=True)
    if not (link.is_symlink() and Path(os.readlink(link)) == archive):
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(archive)
    lab.log("owui", "ok", f"wheelhouse {archive} -> {link.relative_to(lab.REPO)}", time.monotonic() - t)


def phase_site(lab, inv) -> None:
    """After the converge: Open WebUI answers through Caddy's TLS under its own hostname."""
    if not enabled(inv):
        return
    t = time.monotonic()
    host, port = site(inv)
    code, body = site_get(inv, "/health", lab.ca_path(), timeout=180)
    if code != 200:
        raise lab.LabError(f"Open WebUI through Caddy (https://{host}:{port}/health) answered {code}: {body[:200]}")
    lab.log("owui", "ok", f"https://{host}:{port} (Caddy TLS) /health 200; its key: app '{APP}' (keys ensure)",
            time.monotonic() - t)


def site(inv) -> tuple[str, int]:
    """(hostname, port on this machine) of Open WebUI's Caddy site: its own name, Caddy's published HTTPS port."""
    return inv.hostvars[inv.gateway]["open_webui_hostname"], int(inv.get("lab_https_port"))


def site_get(inv, path: str, ca: Path, timeout: float = 60) -> tuple[int, str]:
    """GET path from the Open WebUI site on 127.0.0.1 with its hostname in SNI and Host, trusting only Caddy's root;
    retried while Caddy or Open WebUI start (connection errors, 502/503/504)."""
    host, port = site(inv)
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    last = (0, "")
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
            head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
            last = (int(head.split()[1]), body)
            if last[0] not in (502, 503, 504):
                return last
        except (OSError, ssl.SSLError, ValueError, IndexError) as err:
            last = (0, str(err))
        time.sleep(1)
    return last


# Run on the gateway by the router's own Python, as the router's user (the store is 0600, its own).
LEDGER_PY = r"""
import json, sqlite3, sys
from router_app.decision.config import load_config
from router_app.access.config import resolve_store_path, settings_from
cfg = load_config(sys.argv[1])
c = sqlite3.connect(resolve_store_path(settings_from(cfg), cfg))
rows = c.execute("SELECT ts, app, kid, route, end_user, status FROM usage WHERE ts >= ? ORDER BY ts", (float(sys.argv[2]),))
print(json.dumps([list(r) for r in rows]))
"""


def ledger_since(inv, since: float) -> list[list]:
    """The router's ledger rows since `since` (epoch seconds): [ts, app, kid, route, end_user, status]."""
    gv = inv.vars
    python = str(Path(gv.get("lab_router_cli", "/opt/homelab-router/venv/bin/homelab-router")).parent / "python")
    cmd = ["podman", "exec", "--user", gv.get("lab_router_user", "homelab-router"), inv.container(inv.gateway),
           python, "-c", LEDGER_PY, gv.get("lab_router_config", "/etc/homelab-router/config.yaml"), str(since)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"reading the ledger failed: {out.stderr[-600:]}")
    return json.loads(out.stdout)


def ensured_key_ids(inv) -> list[str]:
    """Key ids of the open-webui app's active keys in the gateway's store (never a secret)."""
    gv = inv.vars
    cmd = ["podman", "exec", "--user", gv.get("lab_router_user", "homelab-router"), inv.container(inv.gateway),
           gv.get("lab_router_cli", "/opt/homelab-router/venv/bin/homelab-router"), "keys", "list", "--config",
           gv.get("lab_router_config", "/etc/homelab-router/config.yaml"), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return [k["key_id"] for k in json.loads(out.stdout) if k["app"] == APP]
