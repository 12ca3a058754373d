"""An engine-like OpenAI-compatible test server (aiohttp) with controllable latency, failures, slots and streams.

Runs on 127.0.0.1 in its own thread and event loop; tests poke its attributes from the test thread.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

from aiohttp import web


BROKEN = frozenset({"truncated", "html", "not_sse", "empty_stream", "dribble", "dribble_stream"})


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Engine:
    def __init__(self, name: str, model: str, port: int | None = None, health: bool = True):
        self.name = name
        self.model = model
        self.port = port or free_port()
        self.health_endpoint = health
        # ok | fail500 | fail400 | hang | health_down, and broken 200s: truncated | html | not_sse | empty_stream |
        # dribble (1 byte per dribble_s, whole answer) | dribble_stream (first event at once, then 1 byte per dribble_s)
        self.mode = "ok"
        self.dribble_s = 0.1
        self.headers_seen: list = []   # request headers received on /v1/*
        self.disconnects = 0           # answers the router stopped reading (client side went away)
        self.latency_s = 0.0
        self.stream_chunks = 3
        self.stream_usage = True       # false: an engine that ignores stream_options (no usage chunk)
        self.chunk_delay_s = 0.0
        self.requests: list = []    # parsed bodies received on /v1/*
        self.in_flight = 0
        self.max_in_flight = 0
        self.finished_streams = 0
        self.loop = asyncio.new_event_loop()
        self._gate = None
        self._runner = None
        self._site = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=f"engine-{name}")
        self._thread.start()
        self._call(self._init())
        self.start()

    # ---------------------------------------------------------------- control (test thread)
    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _init(self):
        self._gate = asyncio.Event()
        self._gate.set()
        self._unhang = asyncio.Event()

    async def _reset_hang(self):
        self._unhang.set()
        await asyncio.sleep(0.05)
        self._unhang = asyncio.Event()

    def hold(self):
        """Requests (and streams after their first chunk) wait until release()."""
        self.loop.call_soon_threadsafe(self._gate.clear)

    def release(self):
        self.loop.call_soon_threadsafe(self._gate.set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        self._call(self._start())

    def stop(self):
        self._call(self._stop())

    def close(self):
        try:
            self.release()
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    def reset(self):
        if self._runner is None:
            self.start()
        self._call(self._reset_hang())
        self.mode = "ok"
        self.latency_s = 0.0
        self.chunk_delay_s = 0.0
        self.stream_chunks = 3
        self.requests.clear()
        self.headers_seen.clear()
        self.disconnects = 0
        self.dribble_s = 0.1
        self.max_in_flight = 0
        self.finished_streams = 0
        self.release()

    def models_seen(self):
        return [r.get("model") for r in self.requests]

    async def _start(self):
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        if self.health_endpoint:
            app.router.add_get("/health", self.health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- handlers
    async def health(self, request):
        if self.mode in ("health_down", "hang_all"):
            return web.json_response({"error": {"message": "Loading model", "code": 503}}, status=503)
        return web.json_response({"status": "ok"})

    async def models(self, request):
        if self.mode == "health_down":
            return web.json_response({"error": {"message": "down"}}, status=503)
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _common(self, request):
        body = await request.json()
        self.requests.append(body)
        self.headers_seen.append({k.lower(): v for k, v in request.headers.items()})
        if self.mode == "fail500":
            return None, web.json_response({"error": {"message": "CUDA error", "type": "server_error"}}, status=500)
        if self.mode == "fail400":
            return None, web.json_response({"error": {"message": "context too long", "type": "invalid_request_error",
                                                      "code": "context_length_exceeded"}}, status=400)
        if self.mode == "hang":
            await self._unhang.wait()
            return None, web.json_response({"error": {"message": "gave up"}}, status=500)
        return body, None

    async def chat(self, request):
        return await self._answer(request, chat=True)

    async def completions(self, request):
        return await self._answer(request, chat=False)

    async def _answer(self, request, chat: bool):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body, err = await self._common(request)
            if err is not None:
                return err
            if self.mode in BROKEN:
                return await self._broken(request, body)
            if body.get("stream"):
                return await self._stream(request, body, chat)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            await self._gate.wait()
            text = f"{self.name} answers"
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                      if chat else {"index": 0, "text": text, "finish_reason": "stop"})
            return web.json_response({
                "id": "x-1", "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
        finally:
            self.in_flight -= 1

    async def _stream(self, request, body, chat):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def ev(obj):
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        def chunk(delta, finish=None):
            c = {"index": 0, "delta": delta, "finish_reason": finish} if chat else \
                {"index": 0, "text": delta.get("content", ""), "finish_reason": finish}
            return ev({"id": "s-1", "object": "chat.completion.chunk", "model": body.get("model"), "choices": [c]})

        await resp.write(chunk({"role": "assistant", "content": ""}))
        for i in range(self.stream_chunks):
            await self._gate.wait()
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await resp.write(chunk({"content": f"{self.name}-{i} "}))
        await resp.write(chunk({}, "stop"))
        so = body.get("stream_options") or {}
        if so.get("include_usage") and self.stream_usage:
            await resp.write(ev({"id": "s-1", "object": "chat.completion.chunk", "model": body.get("model"),
                                 "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3,
                                                          "total_tokens": 8}}))
        await resp.write(b"data: [DONE]\n\n")
        self.finished_streams += 1
        await resp.write_eof()
        return resp

    async def _broken(self, request, body):
        """A 200 that is not what was asked for, or one that takes its time."""
        mode = self.mode
        if mode == "truncated":
            return web.Response(body=b'{"id": "x-1", "object": "chat.completion", "choices": [{"ind',
                                content_type="application/json")
        if mode == "html":
            return web.Response(body=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        if mode == "not_sse":
            return web.json_response({"id": "x-1", "object": "chat.completion", "choices": []})
        if mode == "empty_stream":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write_eof()
            return resp
        if mode == "dribble_stream":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n')
            payload = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"x" * 400 + b'"}}]}\n\n'
        else:   # dribble: a whole JSON answer, one byte at a time
            payload = json.dumps({"id": "x-1", "object": "chat.completion", "model": body.get("model"),
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "y" * 400},
                                               "finish_reason": "stop"}]}).encode()
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
        try:
            for i in range(len(payload)):
                await resp.write(payload[i:i + 1])
                await asyncio.sleep(self.dribble_s)
            await resp.write_eof()
        except ConnectionError:      # the router stopped reading: it cut the answer
            self.disconnects += 1
        return resp

    async def embeddings(self, request):
        body, err = await self._common(request)
        if err is not None:
            return err
        inp = body.get("input")
        n = len(inp) if isinstance(inp, list) else 1
        return web.json_response({"object": "list", "model": body.get("model"),
                                  "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                                           for i in range(n)],
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}})
