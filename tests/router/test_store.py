"""Store and ledger on real SQLite files (no HTTP)."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import threading
import time

import pytest

from router_app.access.ledger import LedgerWriter
from router_app.access.store import Store, StoreError, UsageRow, split_token
from router_app.access.audit import RotatingJsonl


def _row(rid: str, app: str = "bot", tokens: int = 10, ts: float | None = None) -> UsageRow:
    return UsageRow(rid, ts or time.time(), app, "k", "mouth", "general_chat", tokens // 2,
                    tokens - tokens // 2, tokens, False, 200, 1.0)


def test_wal_and_no_plain_secret(tmp_path):
    p = tmp_path / "s.sqlite3"
    st = Store(str(p))
    rec, secret = st.create_key("bot", routes=["mouth"], rpm=5, tokens_per_day=100)
    assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert oct(os.stat(p).st_mode & 0o777) == "0o600"
    st.close()
    # the secret appears nowhere in the database files
    blob = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
    assert secret.encode() not in blob
    assert split_token(secret)[0] == rec.kid
    st = Store(str(p))
    rec2 = st.get_active("bot")
    assert rec2.verify(secret) and not rec2.verify(secret + "x") and not rec2.verify("")
    assert rec2.routes == ("mouth",) and rec2.rpm == 5 and rec2.tokens_per_day == 100
    assert "digest" not in rec2.public() and "salt" not in rec2.public()


def test_create_duplicate_revoke_rotate(tmp_path):
    st = Store(str(tmp_path / "s.db"))
    assert not st.has_any_key()
    rec, s1 = st.create_key("bot", tokens_per_month=1000)
    with pytest.raises(StoreError):
        st.create_key("bot")
    with pytest.raises(StoreError):
        st.create_key("bad name")
    with pytest.raises(StoreError):
        st.create_key("x", rpm=0)
    new, s2 = st.rotate("bot")
    assert new.kid != rec.kid and s1 != s2 and new.tokens_per_month == 1000
    assert not new.verify(s1) and new.verify(s2)
    assert [r.kid for r in st.list_keys()] == [new.kid]
    assert len(st.list_keys(include_revoked=True)) == 2
    assert st.revoke("bot") and not st.revoke("bot")
    with pytest.raises(StoreError):
        st.rotate("bot")
    assert st.list_keys() == []
    assert st.has_any_key()  # revoked keys still count: auth stays on
    st.create_key("bot")  # a revoked app name can get a fresh key


def test_insert_usage_is_idempotent_and_transactional(tmp_path):
    st = Store(str(tmp_path / "s.db"))
    assert st.insert_usage([_row("a"), _row("b")]) == 2
    assert st.insert_usage([_row("a"), _row("c")]) == 1  # replayed row ignored
    assert st.count_usage() == 3
    assert st.spent()["bot"] == (30, 30)
    # a failing batch leaves nothing behind
    bad = _row("d")
    bad.prompt_tokens = "not-an-int"  # type: ignore[assignment]
    with pytest.raises(Exception):
        st.insert_usage([_row("e"), bad])
    assert st.count_usage() == 3


def test_spent_by_utc_day_and_month(tmp_path):
    st = Store(str(tmp_path / "s.db"))
    now = time.time()
    st.insert_usage([_row("old", tokens=50, ts=now - 40 * 86400), _row("y", tokens=7, ts=now - 86400 * 0),
                     _row("z", app="cam", tokens=3, ts=now)])
    sp = st.spent(now)
    assert sp["bot"][0] == 7 and sp["cam"] == (3, 3)


def test_writer_group_commit_and_external_change(tmp_path):
    p = str(tmp_path / "s.db")
    st = Store(p)
    changes = []
    audit = RotatingJsonl(str(tmp_path / "audit.jsonl"))
    w = LedgerWriter(st, audit_sink=audit.write_lines, on_external_change=lambda: changes.append(1),
                     poll_s=0.05).start()
    done = threading.Event()
    for i in range(500):
        w.submit(_row(f"r{i}"), b'{"i":%d}' % i, done.set if i == 499 else None)
    assert done.wait(10)
    assert st.count_usage() == 500
    assert w.commits < 500  # rows shared commits
    other = Store(p)
    other.create_key("cli-made")
    deadline = time.time() + 5
    while not changes and time.time() < deadline:
        time.sleep(0.02)
    assert changes, "writer did not notice the other connection's commit"
    w.stop()
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 500


def _child_writer(path: str, n: int, ready) -> None:
    st = Store(path)
    w = LedgerWriter(st, poll_s=10).start()
    for i in range(n):
        ev = threading.Event()
        w.submit(_row(f"k{i}"), None, ev.set)
        ev.wait()
        ready.value = i + 1  # acknowledged = committed


def test_kill_9_keeps_every_acknowledged_row(tmp_path):
    path = str(tmp_path / "s.db")
    Store(path).close()
    ctx = mp.get_context("fork")
    acked = ctx.Value("i", 0)
    p = ctx.Process(target=_child_writer, args=(path, 100000, acked))
    p.start()
    deadline = time.time() + 10
    while acked.value < 300 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    n_acked = acked.value
    assert n_acked >= 300
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = {r[0] for r in conn.execute("SELECT id FROM usage")}
    # every acknowledged row is there; at most the one in flight beyond it
    assert all(f"k{i}" in ids for i in range(n_acked))
    assert n_acked <= len(ids) <= n_acked + 1


def test_rotating_jsonl(tmp_path):
    path = str(tmp_path / "a.jsonl")
    r = RotatingJsonl(path, max_bytes=1024, keep=2)
    line = b'{"x":"' + b"a" * 90 + b'"}'
    for _ in range(60):
        r.write(line)
    r.close()
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]
    for f in files:
        assert os.path.getsize(tmp_path / f) <= 1024


def test_ledger_retention(tmp_path):
    st = Store(str(tmp_path / "s.db"))
    now = time.time()
    st.insert_usage([_row(f"old{i}", ts=now - 500 * 86400) for i in range(7)] + [_row("new", ts=now)])
    assert st.prune(now - 400 * 86400, chunk=3) == 7
    assert st.count_usage() == 1
    st.insert_usage([_row("old-again", ts=now - 500 * 86400)])
    w = LedgerWriter(st, keep_days=400, poll_s=0.05).start()   # prunes once at start
    deadline = time.time() + 5
    while st.count_usage() != 1 and time.time() < deadline:
        time.sleep(0.02)
    w.stop()
    assert st.count_usage() == 1 and w.pruned == 1
