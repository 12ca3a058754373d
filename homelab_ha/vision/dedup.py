"""Two-layer de-duplication across the triggers (real-time push, parallel push, polled fallback).

Layer 1 (identity): any id a trigger carries (Frigate event id, review id, the review's detection ids, a snapshot's
event id) that was claimed in the last ``id_ttl_s`` makes it the same event.
Layer 2 (proximity): the same camera and label within ``window_s`` of a claimed event is the same event even with
unrelated ids (a Ring ding and the Frigate object it caused).
``claim`` is atomic: of three triggers racing, exactly one wins and the others are told whose duplicate they are.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

from .triggers import CameraEvent


class Deduper:
    def __init__(self, window_s: float = 30.0, id_ttl_s: float = 3600.0):
        self.window_s = window_s
        self.id_ttl_s = id_ttl_s
        self._ids: dict[str, tuple[str, float]] = {}              # id -> (winning key, claimed at)
        self._recent: dict[tuple[str, str], tuple[str, float]] = {}  # (camera, label) -> (key, event ts)
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for i in [i for i, (_, t) in self._ids.items() if now - t > self.id_ttl_s]:
            del self._ids[i]

    def claim(self, ev: CameraEvent) -> tuple[bool, Optional[str], str]:
        """(won, key of the event it duplicates, layer) — layer is '' for a win, 'id' or 'window'."""
        now = time.time()
        with self._lock:
            self._expire(now)
            for i in ev.ids:
                if i in self._ids:
                    key = self._ids[i][0]
                    for j in ev.ids:           # remember the new aliases too
                        self._ids.setdefault(j, (key, now))
                    return False, key, "id"
            near = self._recent.get((ev.camera, ev.label))
            if near is not None and abs(ev.ts - near[1]) <= self.window_s:
                for j in ev.ids:
                    self._ids.setdefault(j, (near[0], now))
                return False, near[0], "window"
            for j in ev.ids:
                self._ids[j] = (ev.key, now)
            self._recent[(ev.camera, ev.label)] = (ev.key, ev.ts)
            return True, None, ""
