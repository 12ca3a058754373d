"""Per-key requests-per-minute limiter.

A sliding-window log: for each app we keep the admission times of the last
``rpm`` admitted requests. A request is admitted iff fewer than ``rpm``
requests were admitted in the last 60 seconds, so no 60-second window ever
holds more than ``rpm`` admissions (exact, no fixed-window burst at minute
boundaries). When refused, ``Retry-After`` is the time until the oldest entry
leaves the window (rounded up to whole seconds, at least 1).

Check and record are one critical section under a lock, so parallel callers
(event loop tasks or threads) can never both take the last slot.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable, Optional

WINDOW_S = 60.0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S):
        self._clock = clock
        self._window = window_s
        self._logs: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, app: str, rpm: Optional[int]) -> Optional[float]:
        """None when admitted (and recorded); otherwise seconds to wait."""
        if not rpm:
            return None
        now = self._clock()
        with self._lock:
            log = self._logs.get(app)
            if log is None:
                log = self._logs[app] = deque()
            edge = now - self._window
            while log and log[0] <= edge:
                log.popleft()
            if len(log) >= rpm:
                # the (len - rpm + 1)-th oldest must leave before a slot frees
                oldest = log[len(log) - rpm]
                return max(oldest + self._window - now, 0.001)
            log.append(now)
            return None

    def undo(self, app: str) -> None:
        """Give back the most recent admission (the request was refused later,
        e.g. by the budget check, and should not use up a slot)."""
        with self._lock:
            log = self._logs.get(app)
            if log:
                log.pop()

    def used(self, app: str) -> int:
        now = self._clock()
        with self._lock:
            log = self._logs.get(app)
            if not log:
                return 0
            edge = now - self._window
            return sum(1 for t in log if t > edge)

    def forget(self, app: str) -> None:
        with self._lock:
            self._logs.pop(app, None)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
