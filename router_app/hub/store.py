"""The hub's one SQLite store (WAL): nodes, commands, events.

Every write is one short transaction under a lock, so the store is safe from the event loop and from threads.
Command state changes are compare-and-set (`UPDATE ... WHERE status = ?`): a command is handed to an agent at most
once, even across a restart, because `delivered` is committed before the reply leaves the hub.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
  name TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL, state TEXT NOT NULL,
  info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS commands (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, node TEXT, args TEXT NOT NULL, status TEXT NOT NULL,
  requested_by TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, delivered_at REAL,
  finished_at REAL, result TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (node, status);
CREATE INDEX IF NOT EXISTS commands_created ON commands (created_at);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, node TEXT, route TEXT,
  data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
"""

OPEN = ("queued", "delivered", "running")
CMD_COLS = ("id", "kind", "node", "args", "status", "requested_by", "created_at", "expires_at", "delivered_at",
            "finished_at", "result", "detail")


def _cmd(row) -> dict:
    d = dict(zip(CMD_COLS, row))
    d["args"] = json.loads(d["args"])
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return d


class HubStore:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
                self._db.execute("COMMIT")
                return out
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _q(self, sql: str, params=()) -> list:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # ----------------------------------------------------------------------------- nodes
    def load_nodes(self) -> dict:
        return {r[0]: {"first_seen": r[1], "last_seen": r[2], "state": r[3], "info": json.loads(r[4])}
                for r in self._q("SELECT name, first_seen, last_seen, state, info FROM nodes")}

    def save_node(self, name: str, first_seen: float, last_seen: float, state: str, info: dict) -> None:
        def tx(db):
            db.execute("INSERT INTO nodes (name, first_seen, last_seen, state, info) VALUES (?,?,?,?,?) "
                       "ON CONFLICT(name) DO UPDATE SET last_seen=excluded.last_seen, state=excluded.state, "
                       "info=excluded.info", (name, first_seen, last_seen, state, json.dumps(info)))
        self._tx(tx)

    def set_node_state(self, name: str, state: str) -> None:
        self._tx(lambda db: db.execute("UPDATE nodes SET state=? WHERE name=?", (state, name)))

    # ----------------------------------------------------------------------------- commands
    def add_command(self, cmd: dict) -> None:
        self._tx(lambda db: db.execute(
            "INSERT INTO commands (id, kind, node, args, status, requested_by, created_at, expires_at, detail) "
            "VALUES (?,?,?,?,?,?,?,?,?)", (cmd["id"], cmd["kind"], cmd.get("node"), json.dumps(cmd["args"]),
                                           cmd["status"], cmd["requested_by"], cmd["created_at"],
                                           cmd["expires_at"], cmd.get("detail"))))

    def get_command(self, cid: str) -> Optional[dict]:
        rows = self._q(f"SELECT {','.join(CMD_COLS)} FROM commands WHERE id=?", (cid,))
        return _cmd(rows[0]) if rows else None

    def list_commands(self, node: Optional[str] = None, status: Optional[str] = None, limit: int = 100) -> list:
        where, params = [], []
        if node:
            where.append("node=?")
            params.append(node)
        if status:
            where.append("status=?")
            params.append(status)
        sql = f"SELECT {','.join(CMD_COLS)} FROM commands"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        return [_cmd(r) for r in self._q(sql, (*params, limit))]

    def has_queued(self, node: str) -> bool:
        return bool(self._q("SELECT 1 FROM commands WHERE node=? AND status='queued' LIMIT 1", (node,)))

    def take_for_node(self, node: str, now: float) -> list:
        """Queued, unexpired commands for a node, marked delivered in the same transaction (at most once)."""
        def tx(db):
            rows = db.execute(f"SELECT {','.join(CMD_COLS)} FROM commands WHERE node=? AND status='queued' "
                              "AND expires_at > ? ORDER BY created_at", (node, now)).fetchall()
            for r in rows:
                db.execute("UPDATE commands SET status='delivered', delivered_at=? WHERE id=? AND status='queued'",
                           (now, r[0]))
            return rows
        out = []
        for r in self._tx(tx):
            d = _cmd(r)
            d["status"], d["delivered_at"] = "delivered", now
            out.append(d)
        return out

    def finish(self, cid: str, status: str, result: Any, now: float, from_status=OPEN,
               node: Optional[str] = None) -> Optional[dict]:
        """Compare-and-set to a final status; None when the command is not in one of `from_status`."""
        def tx(db):
            marks = ",".join("?" * len(from_status))
            sql = (f"UPDATE commands SET status=?, finished_at=?, result=? WHERE id=? AND status IN ({marks})")
            params = [status, now, json.dumps(result), cid, *from_status]
            if node is not None:
                sql += " AND node=?"
                params.append(node)
            return db.execute(sql, params).rowcount
        if not self._tx(tx):
            return None
        return self.get_command(cid)

    def ack(self, cid: str, node: str, now: float) -> bool:
        """The agent took the command (and recorded its id before running it): delivered -> running."""
        return bool(self._tx(lambda db: db.execute(
            "UPDATE commands SET status='running', detail=NULL WHERE id=? AND node=? AND status='delivered'",
            (cid, node)).rowcount))

    def requeue_unacked(self, now: float, ack_timeout_s: float) -> list:
        """Delivered but never acknowledged (the reply was lost): queued again. Safe: the agent records every id it
        starts and never runs one twice, it only acknowledges it again."""
        def tx(db):
            rows = db.execute("SELECT id, node, kind FROM commands WHERE status='delivered' AND delivered_at <= ? "
                              "AND expires_at > ?", (now - ack_timeout_s, now)).fetchall()
            for cid, _n, _k in rows:
                db.execute("UPDATE commands SET status='queued', detail='redelivery: no acknowledgement from the "
                           "agent' WHERE id=? AND status='delivered'", (cid,))
            return rows
        return self._tx(tx)

    def expire(self, now: float) -> list:
        """Queued commands past expiry -> expired; taken ones past expiry with no result -> lost. Never re-sent."""
        def tx(db):
            rows = db.execute("SELECT id, node, kind, status FROM commands WHERE status IN "
                              "('queued','delivered','running') AND expires_at <= ?", (now,)).fetchall()
            for cid, _n, _k, st in rows:
                db.execute("UPDATE commands SET status=?, finished_at=? WHERE id=? AND status=?",
                           ("expired" if st == "queued" else "lost", now, cid, st))
            return rows
        return self._tx(tx)

    def command_counts(self) -> list:
        return self._q("SELECT kind, status, COUNT(*) FROM commands GROUP BY kind, status")

    # ----------------------------------------------------------------------------- events
    def add_event(self, ts: float, kind: str, node: Optional[str], route: Optional[str], data: dict) -> int:
        return self._tx(lambda db: db.execute(
            "INSERT INTO events (ts, kind, node, route, data) VALUES (?,?,?,?,?)",
            (ts, kind, node, route, json.dumps(data, default=str))).lastrowid)

    def events(self, since_id: int = 0, kind: Optional[str] = None, node: Optional[str] = None,
               route: Optional[str] = None, limit: int = 200) -> list:
        where, params = ["id > ?"], [since_id]
        for col, val in (("kind", kind), ("node", node), ("route", route)):
            if val:
                where.append(f"{col}=?")
                params.append(val)
        rows = self._q(f"SELECT id, ts, kind, node, route, data FROM events WHERE {' AND '.join(where)} "
                       "ORDER BY id DESC LIMIT ?", (*params, limit))
        return [{**json.loads(r[5]), "id": r[0], "ts": r[1], "kind": r[2], "node": r[3], "route": r[4]}
                for r in reversed(rows)]

    def trim_events(self, keep: int) -> None:
        self._tx(lambda db: db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (keep,)))


def now() -> float:
    return time.time()
