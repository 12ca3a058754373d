"""Open WebUI on the lab's gateway, in Debian's headless Chromium, through Caddy's TLS under its own hostname
(trusting only Caddy's lab root CA): create the admin account (or sign in to it on a reused lab), pick
homelab/auto, send a prompt, see the answer from a lab engine, and find it in the router's ledger under the
open-webui key (the one the converge ensured with `homelab-router keys ensure`) and the user. Faults: every engine
down while chatting -> the page shows the router's error, no hang; the open-webui unit restarted -> the chat history
is still there. The browser helpers are shared with the loopback test (tests/owui_browser.py); the lab side
(wheelhouse, site, ledger) is lab_open_webui.py."""
from __future__ import annotations

import time

import lab_open_webui as owui
import pytest
from owui_browser import (ADMIN, ROUTER_503, assistant_text, body_text, chromium, create_admin, pick_model, send,
                          wait)

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py

pytestmark = [pytest.mark.lab, pytest.mark.browser, pytest.mark.xdist_group("lab"), pytest.mark.timeout(1200)]

PROMPT = "hello, how are you today?"


@pytest.fixture(scope="module")
def site(lab):
    inv = lab["lab"]
    if not owui.enabled(inv):
        pytest.skip("Open WebUI is not enabled on the gateway (open_webui_enabled)")
    host, port = owui.site(inv)
    code, body = owui.site_get(inv, "/health", lab["ca"], timeout=180)
    assert code == 200, f"https://{host}:{port}/health -> {code} {body[:200]}"
    return {"host": host, "port": port, "url": f"https://{host}:{port}"}


@pytest.fixture
def driver(lab, site, tmp_path):
    # Chromium resolves the site's name to the published port on loopback, and trusts Caddy's root (NSS database).
    drv = chromium(tmp_path, ca_file=lab["ca"], host_map={site["host"]: "127.0.0.1"})
    drv.implicitly_wait(0)
    yield drv
    drv.quit()


def _settled_answer(driver, timeout=120):
    """The last answer once it has text and stopped growing for 2 s (the stream ended)."""
    seen = {"text": "", "since": time.time()}

    def settled(d):
        text = assistant_text(d).strip()
        if text != seen["text"]:
            seen.update(text=text, since=time.time())
            return None
        return text if text and time.time() - seen["since"] > 2 else None
    return wait(driver, settled, timeout, "the streamed answer")


def _engines(inv):
    unit = inv.vars.get("lab_engine_unit", "llama-server-{route}.service")
    return [(inv.container(host), unit.format(route=route)) for route, host in sorted(inv.routes().items())]


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_open_webui_key_was_ensured_by_the_converge(lab, site):
    """One converge, no key in the lab's secrets: the gateway's store holds exactly one active open-webui key."""
    assert "vault_open_webui_router_api_key" not in (labmod.STATE / "secrets.yml").read_text()
    assert len(owui.ensured_key_ids(lab["lab"])) == 1


def test_chat_in_chromium_through_caddy_ledger_and_faults(lab, site, driver, client):
    inv = lab["lab"]
    t0 = time.time() - 5
    create_admin(driver, site["url"], existing_ok=True)
    assert driver.current_url.startswith(site["url"]), driver.current_url     # no certificate interstitial
    pick_model(driver, "homelab/auto")
    send(driver, PROMPT)
    answer = _settled_answer(driver)
    assert answer and "error" not in answer.lower(), answer

    # The router's ledger: the chat (and Open WebUI's housekeeping calls) under the ensured open-webui key and the
    # person who typed it. Rows: [ts, app, kid, route, end_user, status].
    kids = owui.ensured_key_ids(inv)

    def mine():
        return [r for r in owui.ledger_since(inv, t0) if r[1] == owui.APP]
    _wait(mine, 60, "ledger rows of app open-webui")
    rows = mine()
    assert all(r[2] in kids for r in rows), (rows, kids)
    assert all(r[4] == ADMIN["email"] for r in rows), rows
    assert any(r[5] == 200 for r in rows), rows

    # Every engine down while chatting: the router's 503 reaches the page quickly, no endless spinner. Each node's
    # gpu_watchdog timer is held meanwhile (it would restart a dead engine within a minute; test_lab_e2e does too).
    engines = _engines(inv)
    nodes = sorted({container for container, _ in engines})
    try:
        for container in nodes:
            labmod.podman_exec(container, "systemctl", "stop", "gpu-watchdog.timer", check=False)
        for container, unit in engines:
            labmod.podman_exec(container, "systemctl", "stop", unit)
        t = time.monotonic()
        send(driver, "hello again, are you there?")
        wait(driver, lambda d: ROUTER_503.search(body_text(d)), 45, "the router's error in the page")
        assert time.monotonic() - t < 45
    finally:
        for container, unit in engines:
            labmod.podman_exec(container, "systemctl", "start", unit, check=False)
        for container in nodes:
            labmod.podman_exec(container, "systemctl", "start", "gpu-watchdog.timer", check=False)

    def answers():
        try:
            client.chat.completions.create(model="homelab/auto", max_tokens=4,
                                           messages=[{"role": "user", "content": "hello"}])
            return True
        except Exception:  # noqa: BLE001 - the engines are still coming back
            return False
    _wait(answers, 180, "the router answering again after the engines restarted")

    # The open-webui unit restarted: the chat and its history are still there (data dir, same signing key).
    chat_url = driver.current_url
    assert "/c/" in chat_url, chat_url
    labmod.podman_exec(inv.container(inv.gateway), "systemctl", "restart", "open-webui", timeout=120)
    code, _ = owui.site_get(inv, "/health", lab["ca"], timeout=180)
    assert code == 200
    driver.get(chat_url)
    wait(driver, lambda d: PROMPT in body_text(d) and answer[:40] in body_text(d), 90,
         "the chat history after the restart")
