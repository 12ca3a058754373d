"""The REAL llama-server in router mode for the catalog tests (the vendored llama.cpp, built and cached by
tests/tools/build_llama_server_cache.sh), and a counting loopback proxy to put in front of it.

llama-server's router mode (tools/server/README.md of llama.cpp, "Using multiple models"): `--models-dir` lists one
model per GGUF file, `--models-max` caps the resident ones, `--no-models-autoload` makes it refuse (400 "model is not
loaded") a request for a model nobody loaded; `GET /models`, `POST /models/load`, `POST /models/unload`.

`CountingProxy` is not a double: it forwards every request byte for byte to the real engine (streams included) and
only counts what passes (method, path), so a test can say "exactly one POST /models/load reached the engine". It
exists because llama-server does not log its requests at the default verbosity. `hold(path, needle)` keeps the
requests to `path` whose body contains `needle` waiting before they reach the engine until `release()`: a request
the router has in flight for as long as a test needs.
"""
from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web

from engine import free_port

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("LLAMA_SERVER_BIN", REPO / ".cache" / "llama-server" / "0.3.36" / "llama-server"))
NAMES = ("tiny-alpha", "tiny-beta", "tiny-gamma")


def ensure_binary() -> Path:
    """The cached llama-server: CI builds it when missing (cached, flock'd); elsewhere a missing one skips, saying how
    to build it."""
    if not BINARY.is_file():
        if os.environ.get("CI") and "LLAMA_SERVER_BIN" not in os.environ:
            subprocess.run(["bash", str(REPO / "tests" / "tools" / "build_llama_server_cache.sh")], check=True,
                           stdout=subprocess.DEVNULL, timeout=3600)
        else:
            pytest.skip(f"no cached llama-server at {BINARY} (tests/tools/build_llama_server_cache.sh builds it)")
    return BINARY


def start_llama_router(d: Path, models_max: int = 2, port: int = 0):
    """Starts llama-server in router mode over three tiny GGUF models in `d` (made when missing); returns
    (process, base url, log file). `port`: 0 picks a free one. Skips the test when the cached binary is missing."""
    ensure_binary()
    for i, n in enumerate(NAMES):
        if (d / f"{n}.gguf").is_file():
            continue
        subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "make_tiny_gguf.py"), "--out",
                        str(d / f"{n}.gguf"), "--seed", str(i)], check=True, capture_output=True)
    port = port or free_port()
    log = open(d / "llama-server.log", "ab")
    proc = subprocess.Popen([str(BINARY), "--models-dir", str(d), "--models-max", str(models_max),
                             "--no-models-autoload", "--host", "127.0.0.1", "--port", str(port), "-c", "512",
                             "-t", "1", "--parallel", "4"],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("llama-server (router mode) did not start: " + (d / "llama-server.log").read_text()[-2000:])
        time.sleep(0.1)
    return proc, url, log


def stop_llama_router(proc, log) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    log.close()


def states(url: str) -> dict:
    """The engine's own view: model -> loaded | loading | unloaded | failed."""
    return {m["id"]: m["status"]["value"] for m in httpx.get(url + "/models", timeout=5).json()["data"]}


class CountingProxy:
    """A loopback reverse proxy to `target` that counts (method, path) of every request it forwards."""

    def __init__(self, target: str):
        self.target = target
        self.counts: collections.Counter = collections.Counter()
        self.held = 0                  # requests waiting at the hold now
        self._hold = None              # (path, needle bytes, asyncio.Event)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="counting-proxy")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("counting proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
                                              auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.counts[(request.method, request.path)] += 1
        body = await request.read()
        hold = self._hold
        if hold is not None and request.path == hold[0] and hold[1] in body:
            self.held += 1
            try:
                await hold[2].wait()
            finally:
                self.held -= 1
        hdrs = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.target + request.path_qs, data=body,
                                         headers=hdrs) as up:
            out = web.StreamResponse(status=up.status)
            for k, v in up.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    out.headers[k] = v
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    def hold(self, path: str, needle: bytes) -> None:
        async def arm():
            self._hold = (path, needle, asyncio.Event())
        asyncio.run_coroutine_threadsafe(arm(), self._loop).result(5)

    def release(self) -> None:
        async def go():
            if self._hold is not None:
                self._hold[2].set()
                self._hold = None
        asyncio.run_coroutine_threadsafe(go(), self._loop).result(5)

    def wait_held(self, n: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.held < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} request(s) held at the proxy, {self.held} after {timeout_s}s")
            time.sleep(0.02)

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def stop():
            await self._runner.cleanup()
            await self._session.close()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
