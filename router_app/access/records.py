"""The access layer's in-memory records (per-app state, tickets, counters) and the helpers that read a call's
usage and prompt text."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class _AppState:
    day: str
    month: str
    spent_day: int = 0
    spent_month: int = 0
    reserved: int = 0
    inflight: int = 0


@dataclass
class Ticket:
    ledger_id: str       # unique per admitted request (ledger primary key; never client-supplied)
    request_id: str      # the router's request id (x-request-id), for joining with the other logs
    app: str
    kid: Optional[str]
    route: str
    reserved: int
    est_prompt: int
    t0: float
    prompt: Optional[str] = None
    settled: bool = False
    end_user: Optional[str] = None   # the app's own user, when the app names one


class _Metrics:
    """Counters labelled by app and route only (bounded: keys x routes)."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.prompt: dict[tuple[str, str], int] = {}
        self.completion: dict[tuple[str, str], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.forbidden: dict[tuple[str, str], int] = {}
        self.rate_limited: dict[str, int] = {}
        self.budget_refused: dict[str, int] = {}
        self.unauthorized = 0


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _iso_ms(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"


def _tokens(usage: Optional[dict]) -> tuple[int, int, Optional[int], bool]:
    if not isinstance(usage, dict):
        return 0, 0, None, False
    pt = usage.get("prompt_tokens") or 0
    ct = usage.get("completion_tokens") or 0
    tt = usage.get("total_tokens")
    try:
        pt, ct = int(pt), int(ct)
        tt = int(tt) if tt is not None else pt + ct
    except (TypeError, ValueError):
        return 0, 0, None, False
    return pt, ct, tt, False


def _prompt_text(body: Any) -> Optional[str]:
    if not isinstance(body, dict):
        return None
    if "messages" in body and isinstance(body["messages"], list):
        parts = []
        for m in body["messages"]:
            if not isinstance(m, dict):
                continue
            c = m.get("content")
            if isinstance(c, str):
                parts.append(f"{m.get('role', '?')}: {c}")
            elif isinstance(c, list):
                txt = " ".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
                parts.append(f"{m.get('role', '?')}: {txt}")
        return "\n".join(parts)[:65536]
    p = body.get("prompt") if "prompt" in body else body.get("input")
    if isinstance(p, str):
        return p[:65536]
    if isinstance(p, list):
        return "\n".join(str(x) for x in p)[:65536]
    return None
