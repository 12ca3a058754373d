"""Shared plumbing for the HTTP API emulators (test doubles) used by tests/emulators.

The emulators are real HTTPS servers on 127.0.0.1: a small threaded ``http.server`` wrapped in an
``ssl`` context whose certificate is signed by a throw-away CA the tests generate (see ``make_pki``).
Each emulator implements ``handle(method, path, query, headers, body) -> (status, headers, payload)``
and keeps its state in memory behind one lock.  Paths under ``/__emulator__/`` are test-only
inspection/seeding hooks, never part of the emulated product's API.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

INSPECT_PREFIX = "/__emulator__/"


@dataclass
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path  # a second CA that did NOT sign the server cert (for "untrusted" tests)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _self_signed_ca(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path) -> Pki:
    """Generate a test CA, a server certificate for 127.0.0.1/localhost, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _self_signed_ca("homelab-ai emulator test CA")
    _other_key, other_cert = _self_signed_ca("some other CA")

    key = _new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        other_ca_cert=directory / "other-ca.pem",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.other_ca_cert.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pki.server_key)
    return pki


Handler = Callable[[str, str, dict, dict, bytes], "tuple[int, dict, Any]"]


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    app: Any = None  # set per server class

    def log_message(self, fmt, *args):  # keep pytest output quiet
        return

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, extra_headers, payload = self.app.handle(method, parts.path, query, headers, body)
        except Exception as exc:  # an emulator bug must surface as a 500, not a hung socket
            status, extra_headers, payload = 500, {}, {"emulator_error": repr(exc)}
        if isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
            ctype = extra_headers.pop("Content-Type", "application/octet-stream")
        else:
            data = json.dumps(payload).encode()
            ctype = extra_headers.pop("Content-Type", "application/json;charset=utf-8")
        reason = extra_headers.pop("X-Reason", None)
        self.send_response(status, reason)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")


class TLSServer:
    """Run ``app`` as an HTTPS server on 127.0.0.1 in a background thread."""

    def __init__(self, app, certfile: Path, keyfile: Path, host: str = "127.0.0.1", port: int = 0):
        handler = type("BoundHandler", (_RequestHandler,), {"app": app})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(certfile), str(keyfile))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.host, self.port = self.httpd.server_address[:2]
        self.app = app
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> "TLSServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def parse_body(headers: dict, body: bytes) -> tuple[dict | None, str | None]:
    """Decode a JSON or form body.  Returns (data, error)."""
    if not body:
        return {}, None
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(body.decode())
        except ValueError:
            return None, "Invalid JSON syntax"
        return (data if isinstance(data, dict) else {}), None
    if ctype == "application/x-www-form-urlencoded":
        return {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}, None
    return {}, None


def run_standalone(app_factory, default_port: int) -> None:
    """``python -m tests.emulators.<x>_emulator --pki-dir DIR [--port N]`` for manual poking."""
    import argparse
    import time

    ap = argparse.ArgumentParser()
    ap.add_argument("--pki-dir", required=True, type=Path, help="where ca.pem/server.pem are (made if absent)")
    ap.add_argument("--port", type=int, default=default_port)
    args = ap.parse_args()
    pki = make_pki(args.pki_dir) if not (args.pki_dir / "server.pem").exists() else Pki(
        args.pki_dir / "ca.pem", args.pki_dir / "server.pem", args.pki_dir / "server-key.pem",
        args.pki_dir / "other-ca.pem",
    )
    server = TLSServer(app_factory(), pki.server_cert, pki.server_key, port=args.port).start()
    print(f"listening on {server.url} (CA: {pki.ca_cert})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
