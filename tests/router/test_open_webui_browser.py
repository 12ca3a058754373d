"""End to end in a real browser: Debian's headless Chromium -> the real Open WebUI (pinned, the role's settings) ->
the real homelab-router (per-app key, ledger) -> loopback engines. Create the admin account, pick homelab/auto, send
a prompt, see the streamed answer; the ledger attributes it to the open-webui key. Faults: the engine down while
chatting shows the router's error (no hang); Open WebUI restarted keeps the history. HOMELAB_UPDATE_SCREENSHOTS=1
refreshes docs/open-webui.png."""
from __future__ import annotations

import json
import os
import sqlite3
import time

import httpx
import pytest
import yaml
from conftest import ROOT, RouterServer, rig_config
from engine import free_port
from owui_browser import (ADMIN, LEDGER_SQL, ROUTER_503, assistant_text, body_text, chromium, create_admin, css,
                          pick_model, send, token, wait)
from owui_rig import OpenWebUI, open_webui_bin, owui_env

from router_app.access.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

@pytest.fixture(scope="module")
def owui_bin():
    return open_webui_bin()


@pytest.fixture
def stack(engines, tmp_path, owui_bin):
    for e in engines.values():
        e.reset()
    cfg = rig_config(engines, tmp_path)
    cfg["store_path"] = str(tmp_path / "state" / "router.sqlite3")
    cfg["auth"] = "required"
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    store = Store(cfg["store_path"])
    _, key = store.create_key("open-webui")
    router = RouterServer(str(path))
    data = tmp_path / "owui-data"
    data.mkdir()
    ui = OpenWebUI(owui_bin, free_port(), owui_env(data, router.url, key), tmp_path / "open-webui.log").start()
    driver = chromium(tmp_path)
    driver.implicitly_wait(0)
    yield router, ui, driver, store, engines
    driver.quit()
    ui.stop()
    router.stop()
    store.close()


def ledger(store_path):
    c = sqlite3.connect(store_path)
    try:
        return c.execute(LEDGER_SQL).fetchall()
    finally:
        c.close()


def test_chat_through_the_router_in_chromium(stack, tmp_path):
    router, ui, driver, store, engines = stack
    create_admin(driver, ui.url)
    models = httpx.get(ui.url + "/api/models", timeout=10,
                       headers={"Authorization": "Bearer " + token(driver)}).json()
    assert "homelab/auto" in [m["id"] for m in models["data"]]
    assert css(driver, "#model-selector-model-button").text.strip() == "homelab/chat"   # the preselected one
    pick_model(driver, "homelab/auto")
    send(driver, "tell me about the weather")
    wait(driver, lambda d: "mouth-2" in assistant_text(d), 60, "the streamed answer")
    assert assistant_text(driver).split() == ["mouth-0", "mouth-1", "mouth-2"]
    assert any(b.get("stream") is True for b in engines["mouth"].requests), "Open WebUI streamed the answer"
    router.sync()
    assert router.app.access.flush()
    rows = ledger(store.path)
    assert rows and all(r[0] == "open-webui" and r[3] == 200 for r in rows), rows
    assert {r[2] for r in rows} == {ADMIN["email"]}, rows          # the person behind the app's key
    # The answer and the housekeeping calls (title, tags, follow-ups) went to the cheap route, never the senior one.
    assert {r[1] for r in rows} == {"mouth"}, rows
    assert engines["brain"].requests == []

    def housekeeping():   # Open WebUI's title/tags/follow-up prompts, classified by the ui_housekeeping bucket
        router.flush_logs()
        lines = (tmp_path / "logs" / "router-decisions.jsonl").read_text().splitlines()
        return [d for d in map(json.loads, lines) if d.get("bucket") == "ui_housekeeping"]
    wait(driver, lambda d: housekeeping(), 60, "a housekeeping call from Open WebUI")
    decisions = [json.loads(x) for x in (tmp_path / "logs" / "router-decisions.jsonl").read_text().splitlines()]
    answer = [d for d in decisions if d.get("stream")]
    assert answer and answer[0]["bucket"] == "general_chat" and answer[0]["reason"] == "bucket_match", answer
    assert {d["route"] for d in housekeeping()} == {"mouth"}
    shot = tmp_path / "open-webui.png"
    assert driver.save_screenshot(str(shot))
    if os.environ.get("HOMELAB_UPDATE_SCREENSHOTS"):   # refresh the README's picture: docs/open-webui.png
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "open-webui.png").write_bytes(shot.read_bytes())

    # The engine dies while chatting: the router's error reaches the page; no spinner forever.
    for e in engines.values():
        e.stop()
    t0 = time.time()
    send(driver, "tell me about the garden")
    wait(driver, lambda d: "no fallback can take this request" in body_text(d), 30,
          "the router's error")
    assert time.time() - t0 < 30
    # the router's own 503 message (its wording; the first call finds the route dead, later ones find it marked down)
    shown = ROUTER_503.search(body_text(driver))
    assert shown, "the router's 503 message is shown as it is"
    direct = httpx.post(router.url + "/v1/chat/completions", timeout=30,
                        headers={"Authorization": "Bearer " + ui.env["OPENAI_API_KEYS"]},
                        json={"model": "homelab/auto", "messages": [{"role": "user", "content": "tell me about it"}]})
    assert direct.status_code == 503, direct.text
    assert ROUTER_503.fullmatch(direct.json()["error"]["message"])
    assert time.time() - t0 < 30
    for e in engines.values():
        e.start()

    # Open WebUI restarted: the history is still there.
    chat_url = driver.current_url
    assert "/c/" in chat_url, chat_url
    ui.stop()
    ui.start()
    driver.get(chat_url)          # same session: the signing key is the same across restarts, as the role keeps it
    wait(driver, lambda d: "mouth-0 mouth-1 mouth-2" in body_text(d), 90,
          "the chat history after the restart")
    assert "tell me about the weather" in body_text(driver)
