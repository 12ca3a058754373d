"""The ledger tells the people behind one app apart: Open WebUI's X-OpenWebUI-User-* headers (a label beside the
app's key; keys, budgets and limits stay per app), and a version-1 store gains the column in place."""
from __future__ import annotations

import sqlite3
import time

import httpx
from conftest import chat

from router_app.access.store import Store


def _rows(path):
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT app, end_user, status FROM usage ORDER BY ts").fetchall()
    finally:
        c.close()


def _enforced(url, deadline=5.0):
    end = time.time() + deadline
    while time.time() < end:
        if httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
                      ).status_code == 401:
            return
        time.sleep(0.05)
    raise AssertionError("keys not enforced")


def test_forwarded_user_lands_in_the_ledger(make_router, tmp_path):
    (tmp_path / "state").mkdir()
    store_path = str(tmp_path / "state" / "router.sqlite3")
    store = Store(store_path)
    try:
        _, key = store.create_key("open-webui")    # before the router starts: it knows the key from the first call
        r = make_router(store_path=store_path, auth="required")
        _enforced(r.url)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=r.url, timeout=10) as c:
            assert chat(c, "tell me about tea", headers={**auth, "X-OpenWebUI-User-Id": "u-1",
                                                        "X-OpenWebUI-User-Email": "ann@home.arpa",
                                                        "X-OpenWebUI-User-Name": "Ann"}).status_code == 200
            assert chat(c, "tell me about tea", headers={**auth, "X-OpenWebUI-User-Id": "u-2"}).status_code == 200
            assert chat(c, "tell me about tea", headers=auth).status_code == 200
        r.sync()
        assert r.app.access.flush()
        assert _rows(store_path) == [("open-webui", "ann@home.arpa", 200), ("open-webui", "u-2", 200),
                                     ("open-webui", None, 200)]
    finally:
        store.close()


def test_version_1_store_gains_the_column(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    c = sqlite3.connect(path)
    c.executescript("""CREATE TABLE usage (id TEXT PRIMARY KEY, request_id TEXT, ts REAL NOT NULL, day TEXT NOT NULL,
        month TEXT NOT NULL, app TEXT NOT NULL, kid TEXT, route TEXT, bucket TEXT,
        prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
        total_tokens INTEGER NOT NULL DEFAULT 0, estimated INTEGER NOT NULL DEFAULT 0, status INTEGER,
        latency_ms REAL);
        INSERT INTO usage (id, ts, day, month, app, total_tokens) VALUES ('a', 1, '1970-01-01', '1970-01', 'bot', 5);
        PRAGMA user_version=1;""")
    c.close()
    s = Store(path)
    try:
        assert s.conn.execute("SELECT app, total_tokens, end_user FROM usage").fetchall() == [("bot", 5, None)]
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        s.close()
    Store(path).close()   # opening it again changes nothing
