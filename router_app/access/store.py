"""SQLite store for per-app keys and the usage ledger.

One file (``store_path`` in the config), WAL journal. Two tables:

* ``keys``: one row per issued secret. Only a random per-key salt and
  ``sha256(salt || secret)`` are kept; the secret itself is printed once by the
  CLI and never stored. Keys are 256-bit random strings, so a fast salted hash
  is enough (slow KDFs only help low-entropy passwords) and keeps verification
  in the microsecond range. Comparison uses :func:`hmac.compare_digest`.
* ``usage``: one row per admitted request, primary key = a unique id the router
  makes per admitted request (never the client's X-Request-Id), written with ``INSERT OR IGNORE`` inside a transaction, so a batch that is
  replayed can never count twice and a crash can never leave half a batch.

Durability: ``synchronous=NORMAL`` in WAL mode. A committed transaction
survives the process being killed (``kill -9``): the WAL frames are already in
the OS page cache. A power cut may roll back the most recent commits but never
corrupts the file. The router's :class:`LedgerWriter` commits rows in a
background thread and only then lets the request finish (group commit), see
``README-access.md``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

KEY_PREFIX = "hlr"
SCHEMA_VERSION = 2   # 2: usage.end_user

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    kid              TEXT PRIMARY KEY,
    app              TEXT NOT NULL,
    salt             BLOB NOT NULL,
    digest           BLOB NOT NULL,
    routes           TEXT,            -- JSON list or NULL (= no route restriction from --routes)
    models           TEXT,            -- JSON list or NULL
    rpm              INTEGER,
    tokens_per_day   INTEGER,
    tokens_per_month INTEGER,
    created_at       REAL NOT NULL,
    revoked_at       REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_active_app ON keys(app) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS usage (
    id                TEXT PRIMARY KEY, -- unique per admitted request, made by the router
    request_id        TEXT,             -- x-request-id (joins the decision and audit logs)
    ts                REAL NOT NULL,
    day               TEXT NOT NULL,  -- UTC YYYY-MM-DD
    month             TEXT NOT NULL,  -- UTC YYYY-MM
    app               TEXT NOT NULL,
    kid               TEXT,
    route             TEXT,
    bucket            TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    estimated         INTEGER NOT NULL DEFAULT 0,
    status            INTEGER,
    latency_ms        REAL,
    end_user          TEXT              -- the app's own user (X-OpenWebUI-User-Email), NULL if none
);
CREATE INDEX IF NOT EXISTS usage_app_day ON usage(app, day);
CREATE INDEX IF NOT EXISTS usage_app_month ON usage(app, month);
"""


class StoreError(Exception):
    """A store operation that cannot be done (unknown app, duplicate app...)."""


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


_periods_cache: tuple = (-1, "", "")


def utc_periods(ts: float) -> tuple[str, str]:
    """(UTC day, UTC month) of ts, cached per day (called for every ledger row)."""
    global _periods_cache
    d = int(ts // 86400)
    c = _periods_cache
    if c[0] != d:
        c = _periods_cache = (d, utc_day(ts), utc_month(ts))
    return c[1], c[2]


def utc_month(ts: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(ts))


def digest_secret(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("utf-8")).digest()


def split_token(token: str) -> Optional[tuple[str, str]]:
    """``hlr_<kid>_<secret>`` -> (kid, token). None when the shape is wrong."""
    if not token.startswith(KEY_PREFIX + "_"):
        return None
    rest = token[len(KEY_PREFIX) + 1:]
    kid, sep, secret = rest.partition("_")
    if not sep or not kid or not secret:
        return None
    return kid, token


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    app: str
    salt: bytes
    digest: bytes
    routes: Optional[tuple[str, ...]]
    models: Optional[tuple[str, ...]]
    rpm: Optional[int]
    tokens_per_day: Optional[int]
    tokens_per_month: Optional[int]
    created_at: float
    revoked_at: Optional[float]

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def verify(self, token: str) -> bool:
        return hmac.compare_digest(digest_secret(self.salt, token), self.digest)

    def public(self) -> dict[str, Any]:
        """What may be shown (CLI list, /admin/keys): never salt or digest."""
        return {
            "app": self.app,
            "key_id": self.kid,
            "routes": list(self.routes) if self.routes is not None else None,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tokens_per_day": self.tokens_per_day,
            "tokens_per_month": self.tokens_per_month,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass
class UsageRow:
    id: str
    ts: float
    app: str
    kid: Optional[str]
    route: Optional[str]
    bucket: Optional[str]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    status: Optional[int]
    latency_ms: Optional[float]
    request_id: Optional[str] = None
    end_user: Optional[str] = None

    def as_tuple(self) -> tuple:
        return (
            self.id, self.request_id, self.ts, *utc_periods(self.ts), self.app, self.kid,
            self.route, self.bucket, int(self.prompt_tokens), int(self.completion_tokens),
            int(self.total_tokens), 1 if self.estimated else 0, self.status, self.latency_ms, self.end_user,
        )


def _row_to_key(r: sqlite3.Row | tuple) -> KeyRecord:
    (kid, app, salt, dig, routes, models, rpm, tpd, tpm, created, revoked) = r
    return KeyRecord(
        kid=kid, app=app, salt=bytes(salt), digest=bytes(dig),
        routes=tuple(json.loads(routes)) if routes is not None else None,
        models=tuple(json.loads(models)) if models is not None else None,
        rpm=rpm, tokens_per_day=tpd, tokens_per_month=tpm,
        created_at=created, revoked_at=revoked,
    )


_KEY_COLS = ("kid, app, salt, digest, routes, models, rpm, tokens_per_day, tokens_per_month, "
             "created_at, revoked_at")


def connect(path: str) -> sqlite3.Connection:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class Store:
    """Synchronous access to the SQLite file. Used by the CLI and by the
    router's background writer; never called on the event loop's hot path."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        self.conn = connect(path)
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass
        with self._lock:
            self.conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            cols = {r[1] for r in self.conn.execute("PRAGMA table_info(usage)")}
            if "end_user" not in cols:   # a version-1 file: add the column (NULL for the old rows)
                try:
                    self.conn.execute("ALTER TABLE usage ADD COLUMN end_user TEXT")
                except sqlite3.OperationalError as e:   # another process added it first
                    if "duplicate column" not in str(e):
                        raise
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- transactions -------------------------------------------------------
    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return out

    def data_version(self) -> int:
        """Changes whenever *another* connection commits (CLI edits)."""
        with self._lock:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # -- keys ---------------------------------------------------------------
    def has_any_key(self) -> bool:
        """True once any key was ever created (revoked ones count: revoking the
        last key must not silently reopen the gateway)."""
        with self._lock:
            return self.conn.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None

    def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]:
        q = f"SELECT {_KEY_COLS} FROM keys"
        if not include_revoked:
            q += " WHERE revoked_at IS NULL"
        q += " ORDER BY app, created_at"
        with self._lock:
            return [_row_to_key(r) for r in self.conn.execute(q).fetchall()]

    def get_active(self, app: str) -> Optional[KeyRecord]:
        with self._lock:
            r = self.conn.execute(
                f"SELECT {_KEY_COLS} FROM keys WHERE app=? AND revoked_at IS NULL", (app,)
            ).fetchone()
        return _row_to_key(r) if r else None

    @staticmethod
    def _new_secret() -> tuple[str, str, bytes, bytes]:
        kid = secrets.token_hex(6)
        token = f"{KEY_PREFIX}_{kid}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_bytes(16)
        return kid, token, salt, digest_secret(salt, token)

    def create_key(
        self, app: str, *, routes: Optional[Sequence[str]] = None,
        models: Optional[Sequence[str]] = None, rpm: Optional[int] = None,
        tokens_per_day: Optional[int] = None, tokens_per_month: Optional[int] = None,
        now: Optional[float] = None, replace: bool = False,
    ) -> tuple[KeyRecord, str]:
        """A new active key for ``app``. An app with an active key is refused, unless ``replace``: then that key is
        revoked in the same transaction, so no reader ever sees the app with no key or with two."""
        if not app or not all(c.isalnum() or c in "-_." for c in app):
            raise StoreError(f"invalid app name {app!r}: use letters, digits, '-', '_' or '.'")
        for name, v in (("rpm", rpm), ("tokens_per_day", tokens_per_day),
                        ("tokens_per_month", tokens_per_month)):
            if v is not None and v <= 0:
                raise StoreError(f"{name} must be a positive integer")
        kid, token, salt, dig = self._new_secret()
        ts = time.time() if now is None else now

        def fn(c: sqlite3.Connection) -> None:
            if replace:
                c.execute("UPDATE keys SET revoked_at=? WHERE app=? AND revoked_at IS NULL", (ts, app))
            elif c.execute("SELECT 1 FROM keys WHERE app=? AND revoked_at IS NULL", (app,)).fetchone():
                raise StoreError(f"app {app!r} already has an active key (use 'keys rotate {app}')")
            c.execute(
                f"INSERT INTO keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,NULL)",
                (kid, app, salt, dig,
                 json.dumps(list(routes)) if routes is not None else None,
                 json.dumps(list(models)) if models is not None else None,
                 rpm, tokens_per_day, tokens_per_month, ts),
            )

        self._tx(fn)
        rec = self.get_active(app)
        assert rec is not None
        return rec, token

    def revoke(self, app: str, now: Optional[float] = None) -> bool:
        ts = time.time() if now is None else now

        def fn(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE keys SET revoked_at=? WHERE app=? AND revoked_at IS NULL", (ts, app)
            ).rowcount

        return self._tx(fn) > 0

    def rotate(self, app: str, now: Optional[float] = None) -> tuple[KeyRecord, str]:
        """New secret, same app and limits; the old secret stops working."""
        ts = time.time() if now is None else now
        kid, token, salt, dig = self._new_secret()

        def fn(c: sqlite3.Connection) -> None:
            r = c.execute(
                f"SELECT {_KEY_COLS} FROM keys WHERE app=? AND revoked_at IS NULL", (app,)
            ).fetchone()
            if r is None:
                raise StoreError(f"no active key for app {app!r}")
            old = _row_to_key(r)
            c.execute("UPDATE keys SET revoked_at=? WHERE kid=?", (ts, old.kid))
            c.execute(
                f"INSERT INTO keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,NULL)",
                (kid, app, salt, dig,
                 json.dumps(list(old.routes)) if old.routes is not None else None,
                 json.dumps(list(old.models)) if old.models is not None else None,
                 old.rpm, old.tokens_per_day, old.tokens_per_month, ts),
            )

        self._tx(fn)
        rec = self.get_active(app)
        assert rec is not None
        return rec, token

    # -- ledger -------------------------------------------------------------
    def insert_usage(self, rows: Iterable[UsageRow]) -> int:
        """Insert rows in one transaction; a row whose request id is already
        present is ignored (never double-counted). Returns rows inserted."""
        data = [r.as_tuple() for r in rows]
        if not data:
            return 0

        def fn(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO usage (id, request_id, ts, day, month, app, kid, route, bucket, "
                "prompt_tokens, completion_tokens, total_tokens, estimated, status, latency_ms, end_user) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", data)
            return c.total_changes - before

        return self._tx(fn)

    def spent(self, now: Optional[float] = None) -> dict[str, tuple[int, int]]:
        """app -> (tokens this UTC day, tokens this UTC month)."""
        ts = time.time() if now is None else now
        day, month = utc_day(ts), utc_month(ts)
        out: dict[str, list[int]] = {}
        with self._lock:
            for app, tok in self.conn.execute(
                    "SELECT app, SUM(total_tokens) FROM usage WHERE month=? GROUP BY app", (month,)):
                out.setdefault(app, [0, 0])[1] = int(tok or 0)
            for app, tok in self.conn.execute(
                    "SELECT app, SUM(total_tokens) FROM usage WHERE day=? GROUP BY app", (day,)):
                out.setdefault(app, [0, 0])[0] = int(tok or 0)
        return {k: (v[0], v[1]) for k, v in out.items()}

    def usage_by_app_route(self, month: Optional[str] = None) -> list[dict[str, Any]]:
        q = ("SELECT app, route, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
             "SUM(total_tokens) FROM usage")
        args: tuple = ()
        if month:
            q += " WHERE month=?"
            args = (month,)
        q += " GROUP BY app, route ORDER BY app, route"
        with self._lock:
            rows = self.conn.execute(q, args).fetchall()
        return [
            {"app": a, "route": r, "calls": n, "prompt_tokens": int(p or 0),
             "completion_tokens": int(c or 0), "total_tokens": int(t or 0)}
            for a, r, n, p, c, t in rows
        ]

    def prune(self, before_ts: float, chunk: int = 5000) -> int:
        """Delete ledger rows older than before_ts, a chunk per transaction."""
        total = 0
        while True:
            n = self._tx(lambda c: c.execute(
                "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE ts < ? LIMIT ?)",
                (before_ts, chunk)).rowcount)
            total += n
            if n < chunk:
                return total

    def count_usage(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0]


# ---------------------------------------------------------------------------
# Background writer: group commit off the event loop.
# ---------------------------------------------------------------------------
