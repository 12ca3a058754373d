"""Scopes of per-app keys beyond inference: ``read`` and ``admin`` (the MCP bridge, router_app/mcpbridge).

A key always may call /v1 (within its routes/models); that is unchanged. A scope grants more:

* ``read``  -- the read-only tools of the MCP bridge (route status, models, nodes, allowlisted files);
* ``admin`` -- every tool, including the mutating ones (drain, reload, load/unload, recover CUDA); implies ``read``.

Scopes belong to the *app*, not to one secret, so ``keys rotate`` keeps them and ``keys revoke`` makes them useless
(a revoked key never verifies). They live in their own table of the same SQLite file, added with ``CREATE TABLE IF
NOT EXISTS``: the ``keys`` table and its readers are untouched, and a store without the table means "no scopes".
"""
from __future__ import annotations

import sqlite3
from typing import Iterable

SCOPES = ("read", "admin")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_scopes (
    app    TEXT PRIMARY KEY,
    scopes TEXT NOT NULL          -- comma-separated, from SCOPES
);
"""


class ScopeError(ValueError):
    """An unknown scope name."""


def normalize(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated, in SCOPES order; ``admin`` implies ``read``."""
    got = {s.strip() for s in scopes if s and s.strip()}
    bad = sorted(got - set(SCOPES))
    if bad:
        raise ScopeError(f"unknown scope(s) {', '.join(bad)}; known: {', '.join(SCOPES)}")
    if "admin" in got:
        got.add("read")
    return tuple(s for s in SCOPES if s in got)


def ensure_table(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def get_scopes(conn: sqlite3.Connection, app: str) -> tuple[str, ...]:
    try:
        row = conn.execute("SELECT scopes FROM key_scopes WHERE app=?", (app,)).fetchone()
    except sqlite3.OperationalError:     # a store that never had scopes
        return ()
    return normalize(row[0].split(",")) if row and row[0] else ()


def all_scopes(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    try:
        rows = conn.execute("SELECT app, scopes FROM key_scopes").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {app: normalize(s.split(",")) for app, s in rows if s}


def set_scopes(conn: sqlite3.Connection, app: str, scopes: Iterable[str]) -> tuple[str, ...]:
    """Replace the app's scopes (an empty list removes them). Runs in its own transaction."""
    norm = normalize(scopes)
    ensure_table(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if norm:
            conn.execute("INSERT INTO key_scopes(app, scopes) VALUES(?, ?) "
                         "ON CONFLICT(app) DO UPDATE SET scopes=excluded.scopes", (app, ",".join(norm)))
        else:
            conn.execute("DELETE FROM key_scopes WHERE app=?", (app,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return norm
