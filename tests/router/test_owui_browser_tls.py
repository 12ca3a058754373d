"""The shared browser helper (tests/owui_browser.py) as the lab test uses it: Chromium reaches a TLS site under its
own hostname on loopback (host_map) and trusts exactly the root CA it is given (ca_file), so a site signed by that
root loads and one signed by another root does not. Real openssl certificates, a real TLS server, Debian's Chromium."""
from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading

import pytest
from engine import free_port
from owui_browser import body_text, chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
HOST = "chat.home.test"


def _ca(tmp, name):
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
                   check=True, capture_output=True)
    return key, crt


def _leaf(tmp, ca_key, ca_crt):
    key, csr, crt, ext = tmp / "leaf.key", tmp / "leaf.csr", tmp / "leaf.crt", tmp / "leaf.ext"
    ext.write_text(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={HOST}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(crt), "-days", "1", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return key, crt


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"<html><head><title>trusted</title></head><body>hello over tls</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_site(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl missing")
    ca_key, ca_crt = _ca(tmp_path, "site-root")
    key, crt = _leaf(tmp_path, ca_key, ca_crt)
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Page)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://{HOST}:{port}/", ca_crt
    server.shutdown()


@pytest.mark.parametrize("trusted", [True, False], ids=["its-root", "another-root"])
def test_chromium_trusts_exactly_the_given_root(tls_site, tmp_path, trusted):
    url, ca_crt = tls_site
    ca = ca_crt if trusted else _ca(tmp_path, "other-root")[1]
    driver = chromium(tmp_path, ca_file=ca, host_map={HOST: "127.0.0.1"})
    try:
        driver.get(url)
        if trusted:
            assert driver.title == "trusted" and "hello over tls" in body_text(driver)
        else:
            assert driver.title != "trusted" and "hello over tls" not in body_text(driver)
    finally:
        driver.quit()
