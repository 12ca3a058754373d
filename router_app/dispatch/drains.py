"""Drains survive a restart: the drained route names live in a small JSON file beside the access store
(`<store dir>/router-state.json`), written atomically on every drain and undrain and read at start."""
from __future__ import annotations

import os
from typing import Optional

import orjson

STATE_FILE = "router-state.json"


def state_path(store_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(store_path)), STATE_FILE)


def load_drained(path: str) -> set:
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError):
        return set()
    names = data.get("drained") if isinstance(data, dict) else None
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def save_drained(path: str, drained) -> Optional[str]:
    """Writes the set atomically; returns an error text instead of raising (a drain still applies live)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"drained": sorted(drained)}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return None
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return f"{type(exc).__name__}: {exc}"
