"""Size-rotated JSONL files for the audit log and structured-validation log.

``audit.jsonl`` holds one line per /v1 call (time, request id, app, route,
bucket, tokens, status, latency; the prompt text only with ``log_prompts:
true``). When a write would take the file past ``max_bytes`` it is renamed to
``audit.jsonl.1`` (older ones shift to ``.2`` ...) and files beyond ``keep``
are deleted. Writes come in batches from the ledger thread, so the event loop
never touches the disk for them.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Optional

import orjson

from .protocol import Principal
from .records import _iso_ms, _prompt_text, _tokens


class RotatingJsonl:
    def __init__(self, path: str, max_bytes: int = 50 * 1024 * 1024, keep: int = 5):
        self.path = path
        self.max_bytes = max(1024, int(max_bytes))
        self.keep = max(0, int(keep))
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self._fh = None
        self._size = 0

    def _open(self) -> None:
        self._fh = open(self.path, "ab", buffering=0)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._size = self._fh.seek(0, os.SEEK_END)

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.keep == 0:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        else:
            oldest = f"{self.path}.{self.keep}"
            if os.path.exists(oldest):
                os.unlink(oldest)
            for i in range(self.keep - 1, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i + 1}")
            if os.path.exists(self.path):
                os.replace(self.path, f"{self.path}.1")
        self._open()

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Each element is one JSON document without the trailing newline."""
        with self._lock:
            if self._fh is None:
                self._open()
            buf: list[bytes] = []
            size = 0
            for ln in lines:
                rec = ln if ln.endswith(b"\n") else ln + b"\n"
                if self._size + size + len(rec) > self.max_bytes and (self._size + size) > 0:
                    if buf:
                        self._fh.write(b"".join(buf))
                        self._size += size
                        buf, size = [], 0
                    self._rotate()
                buf.append(rec)
                size += len(rec)
            if buf:
                self._fh.write(b"".join(buf))
                self._size += size

    def write(self, line: bytes) -> None:
        self.write_lines([line])

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class AuditMixin:
    """The audit and structured-validation lines of AccessController (reads its settings, writer and counters)."""

    def _audit_line(self, now: float, rid: Optional[str], app: Optional[str], route: Optional[str],
                    bucket: Optional[str], status: int, latency_ms: Optional[float], pt: int = 0,
                    ct: int = 0, tt: int = 0, estimated: bool = False, prompt: Optional[str] = None,
                    code: Optional[str] = None) -> Optional[bytes]:
        if self._audit is None:
            return None
        rec: dict[str, Any] = {
            "time": _iso_ms(now), "request_id": rid, "app": app, "route": route, "bucket": bucket,
            "status": status, "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
            "tokens": {"prompt": pt, "completion": ct, "total": tt, "estimated": estimated},
        }
        if code:
            rec["error"] = code
        if prompt is not None:
            rec["prompt"] = prompt
        return orjson.dumps(rec)

    def observe(self, principal: Optional[Principal], usage: Optional[dict], *, route: Optional[str],
                bucket: Optional[str], status: int, latency_ms: float, request_id: Optional[str] = None,
                code: Optional[str] = None, body: Any = None) -> None:
        """A call that got no ticket (refused before admission, or served
        while auth is not enforced): one audit line, per-app counters."""
        pt, ct, tt, _ = _tokens(usage)
        app = principal.app if principal is not None else None
        if app is not None and status == 403:
            with self._lock:
                k = (app, route or "none")
                self._metrics.forbidden[k] = self._metrics.forbidden.get(k, 0) + 1
        prompt = _prompt_text(body) if (self.settings.log_prompts and body is not None) else None
        line = self._audit_line(self._clock(), request_id, app, route, bucket, status, latency_ms,
                                pt, ct, tt or 0, False, prompt, code)
        if line is not None:
            self.writer.submit(None, line)

    def log_structured(self, rec: dict) -> None:
        """One structured-validation.jsonl line: an ISO `ts` like the other logs, and the model's output (raw
        text, validator messages that quote it) only when log_prompts is on."""
        if self._structured_log is None:
            return
        rec = dict(rec)
        t = rec.pop("time", None)
        rec = {"ts": _iso_ms(t if isinstance(t, (int, float)) else self._clock()), **rec}
        if not self.settings.log_prompts:
            attempts = []
            for a in rec.get("attempts") or []:
                if isinstance(a, dict):
                    a = dict(a)
                    if a.get("raw") is not None:
                        a["raw"] = None
                    if a.get("errors"):
                        a["errors"] = len(a["errors"])
                attempts.append(a)
            rec["attempts"] = attempts
        self._structured_log.write(orjson.dumps(rec, default=str))
