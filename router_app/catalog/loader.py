"""Single flight: one run per key at a time; every caller for the same key awaits the same task."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable


class SingleFlight:
    def __init__(self):
        self._tasks: dict = {}
        self.started = 0          # runs started (tests and metrics: 100 waiters for one cold model -> 1)

    def running(self, key) -> bool:
        return key in self._tasks

    async def run(self, key, factory: Callable[[], Awaitable], timeout_s: float):
        """Awaits the run for `key` (starting it when none is running) for at most timeout_s. A waiter that times
        out or is cancelled leaves the run going for the others (asyncio.shield)."""
        task = self._tasks.get(key)
        if task is None:
            self.started += 1
            task = asyncio.get_running_loop().create_task(factory())
            self._tasks[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))
        return await asyncio.wait_for(asyncio.shield(task), timeout_s)

    def _done(self, key, task) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()      # retrieved: never "exception was never retrieved"
