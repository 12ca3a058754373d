#!/usr/bin/env python3
"""The lab's API services: the OPNsense and Proxmox VE emulators (test doubles under tests/emulators/, each
citing the API documentation it follows) as TLS servers on this machine's loopback, so that the example site's
network and compute layers converge in the lab exactly as against the real appliances.

    lab_services.py serve opnsense --port 18444 --pki .lab/pki --secrets .lab/secrets.yml
    lab_services.py serve proxmox  --port 18006 --pki .lab/pki --secrets .lab/secrets.yml

`make lab` (tests/lab/lab.py) starts one detached process per service and `make lab-down` stops them.
Credentials are the lab's generated secrets (the same vault_* names the example's vault uses).
"""
from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "emulators"))

from emulator_base import Pki, TLSServer, make_pki  # noqa: E402

PKI_MAX_AGE = datetime.timedelta(hours=12)   # make_pki's server certificate lives one day


def lab_pki(directory: Path) -> Pki:
    """The lab's CA and 127.0.0.1 server certificate: made once, renewed when older than PKI_MAX_AGE."""
    cert = directory / "server.pem"
    if cert.is_file():
        age = time.time() - cert.stat().st_mtime
        if age < PKI_MAX_AGE.total_seconds():
            return Pki(directory / "ca.pem", cert, directory / "server-key.pem", directory / "other-ca.pem")
    return make_pki(directory)


def build_app(kind: str, secrets: dict, version: str | None):
    if kind == "opnsense":
        from opnsense_emulator import OPNsenseEmulator
        app = OPNsenseEmulator(version=version or "26.7.2",
                               credentials={secrets["vault_opnsense_api_key"]: secrets["vault_opnsense_api_secret"]})
        # The example's firewall is a 4-port Intel i226 mini PC (igc0-igc3; the VLAN trunk is igc1).
        app.settings["devices"] = sorted(set(app.settings["devices"]) | {f"igc{n}" for n in range(4)})
        return app
    if kind == "proxmox":
        from proxmox_emulator import ProxmoxEmulator
        app = ProxmoxEmulator(tokens={secrets["vault_proxmox_token_id"]: secrets["vault_proxmox_token_secret"]})
        app.settings["task_seconds"] = 0.2
        return app
    raise SystemExit(f"unknown service {kind!r} (opnsense or proxmox)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run one emulator until SIGTERM")
    serve.add_argument("kind", choices=["opnsense", "proxmox"])
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--pki", type=Path, required=True)
    serve.add_argument("--secrets", type=Path, required=True)
    serve.add_argument("--version", default=None, help="firmware/PVE version the emulator reports")
    args = ap.parse_args(argv)

    secrets = yaml.safe_load(args.secrets.read_text()) or {}
    pki = lab_pki(args.pki)
    server = TLSServer(build_app(args.kind, secrets, args.version), pki.server_cert, pki.server_key,
                       host="127.0.0.1", port=args.port).start()
    print(f"{args.kind} emulator listening on {server.url} (CA {pki.ca_cert})", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.2)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
