"""TEST DOUBLE - the shared loopback server of the fake cloud providers (fake_openai.py, fake_anthropic.py).

Never a real provider: it binds 127.0.0.1 only, in its own thread and event loop; tests set `mode` and read the
requests and headers it received. Modes: ok | rate_limited (429 + Retry-After: `retry_after`) | fail500 |
overloaded (529) | hang (answers nothing until reset).
"""
from __future__ import annotations

import asyncio
import socket
import threading

from aiohttp import web


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FakeProvider:
    """Subclasses add routes in `routes(app)` and answer in their provider's wire format."""

    def __init__(self, key: str):
        self.key = key
        self.port = free_port()
        self.mode = "ok"
        self.retry_after = "7"
        self.requests: list = []        # parsed JSON bodies the fake accepted or refused
        self.headers_seen: list = []    # request headers (lower-case names)
        self.loop = asyncio.new_event_loop()
        self._unhang = None
        self._runner = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=type(self).__name__)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        self.mode = "ok"
        self.retry_after = "7"
        self.requests.clear()
        self.headers_seen.clear()
        self.loop.call_soon_threadsafe(self._unhang.set)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._unhang.set)
        self._call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self._unhang = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    def routes(self, app: web.Application) -> None:   # pragma: no cover - abstract
        raise NotImplementedError

    async def fault(self, error_body) -> web.StreamResponse | None:
        """The answer of a faulty provider for the current mode, or None in mode ok."""
        if self.mode == "hang":
            await self._unhang.wait()
            self._unhang = asyncio.Event()
            return web.Response(status=500)
        if self.mode == "rate_limited":
            return web.json_response(error_body(429, "rate_limit"), status=429,
                                     headers={"Retry-After": self.retry_after})
        if self.mode == "fail500":
            return web.json_response(error_body(500, "api"), status=500)
        if self.mode == "overloaded":
            return web.json_response(error_body(529, "overloaded"), status=529)
        return None
