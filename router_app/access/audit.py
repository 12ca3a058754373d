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
from typing import Iterable


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
