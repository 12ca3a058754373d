"""Test doubles of the engine APIs the model catalog reads (router_app/catalog/adapters.py): Ollama, LM Studio and
vLLM. They cannot run here (GPUs, CUDA, a desktop app), so these aiohttp servers answer on 127.0.0.1 with the shapes
their documentation gives, and refuse what the real engines refuse. Each runs in its own thread and event loop.

  OllamaDouble    https://docs.ollama.com/api (GET /api/tags: models[].name,size; GET /api/ps: models[].name, size,
                  size_vram, expires_at; POST /api/generate with no prompt loads a model, with keep_alive 0 unloads it
                  and answers done_reason "unload"; an unknown model is a 404 {"error": "model '<name>' not found"}).
                  POST /v1/chat/completions loads on demand, as Ollama does.
                  keep_alive as Ollama's scheduler applies it (server/sched.go: a load takes the request's keep_alive
                  or OLLAMA_KEEP_ALIVE; a request to a loaded model changes its keep_alive only when it carries one;
                  the OpenAI-compatible /v1/chat/completions has no keep_alive field, openai/openai.go
                  ChatCompletionRequest, so it never carries one). A malformed keep_alive is a 400 as Ollama's
                  api.Duration refuses it (api/types.go UnmarshalJSON: a JSON number of seconds, negative = forever,
                  or a Go time.ParseDuration string, so "-1" as a string is refused: "missing unit").
  LmStudioDouble  https://lmstudio.ai/docs/developer/rest (GET /api/v1/models: models[].key, type, size_bytes,
                  loaded_instances[].id; POST /api/v1/models/load {model} -> {type, instance_id, load_time_seconds,
                  status: "loaded"}; POST /api/v1/models/unload {instance_id} -> {instance_id}; an unknown key or
                  instance is a 404). With JIT loading off, a chat for a model that is not loaded is refused (400).
  VllmDouble      https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html and
                  https://docs.vllm.ai/en/latest/usage/metrics.html (GET /v1/models; GET /metrics with
                  vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc labelled by
                  model_name; a chat naming another model is a 404 NotFoundError); sleep mode
                  https://docs.vllm.ai/en/latest/features/sleep_mode.html (POST /sleep, POST /wake_up, GET /is_sleeping;
                  a sleeping engine does not serve).
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time

from aiohttp import web


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _answer(model: str) -> dict:
    return {"id": "chatcmpl-double", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class _Double:
    def __init__(self):
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: list = []          # (method, path, body) the double received
        self.load_delay_s = 0.0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def close(self):
        if not self.loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        time.sleep(0.05)

    async def _body(self, request) -> dict:
        try:
            b = await request.json()
        except Exception:      # noqa: BLE001
            b = None
        self.calls.append((request.method, request.path, b))
        return b if isinstance(b, dict) else {}

    def loads(self) -> int:
        return sum(1 for c in self.calls if c[1] in self.load_paths and not self._is_unload(c))

    def _is_unload(self, call) -> bool:
        return False


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
FOREVER = float("inf")


def go_duration(text: str) -> float:
    """Seconds of a Go duration string, walked as time.ParseDuration does; ValueError with Go's message."""
    orig, s, neg = text, text, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        i = 0
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        num, s = s[:i], s[i:]
        if num in ("", ".") or num.count(".") > 1:
            raise ValueError(f'time: invalid duration "{orig}"')
        j = 0
        while j < len(s) and not (s[j].isdigit() or s[j] == "."):
            j += 1
        unit, s = s[:j], s[j:]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(num) * _GO_UNITS[unit]
    return -total if neg else total


def ollama_keep_alive(value) -> float:
    """What Ollama's api.Duration makes of a request's keep_alive: seconds, FOREVER for a negative value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    secs = float(value) if not isinstance(value, str) else go_duration(value)
    return FOREVER if secs < 0 else secs


class OllamaDouble(_Double):
    load_paths = ("/api/generate",)

    def __init__(self, installed: dict, server_keep_alive: str = "5m"):
        self.installed = dict(installed)     # name -> size in bytes
        self.running: dict = {}              # name -> size in bytes
        self.server_keep_alive = go_duration(server_keep_alive)    # OLLAMA_KEEP_ALIVE
        self.keep_alive: dict = {}           # name -> seconds the loaded model stays after its last request
        self.generate_error = None           # (status, message): /api/generate fails so (an engine in trouble)
        super().__init__()

    def _schedule(self, name: str, keep) -> None:
        """A request uses `name` (server/sched.go): loaded with `keep` or the server default, or its keep_alive
        replaced only when the request carries one."""
        if name not in self.running:
            self.running[name] = self.installed[name]
            self.keep_alive[name] = self.server_keep_alive if keep is None else keep
        elif keep is not None:
            self.keep_alive[name] = keep

    def _unload(self, name: str) -> None:
        self.running.pop(name, None)
        self.keep_alive.pop(name, None)

    def routes(self, app):
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.v1_models)     # https://docs.ollama.com/api/openai-compatibility

    async def v1_models(self, request):
        return web.json_response({"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                                              "owned_by": "library"} for n in self.installed]})

    def _is_unload(self, call) -> bool:
        b = call[2] or {}
        try:
            return b.get("keep_alive") is not None and ollama_keep_alive(b["keep_alive"]) == 0 and not b.get("prompt")
        except ValueError:
            return False

    async def tags(self, request):
        return web.json_response({"models": [{"name": n, "model": n, "size": s, "digest": "0" * 64,
                                              "modified_at": "2026-01-01T00:00:00Z",
                                              "details": {"format": "gguf", "family": "llama"}}
                                             for n, s in self.installed.items()]})

    async def ps(self, request):
        def expires(n):
            k = self.keep_alive.get(n, self.server_keep_alive)
            t = 10 ** 10 if k == FOREVER else time.time() + k       # Ollama shows "forever" as a far-off date
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        return web.json_response({"models": [{"name": n, "model": n, "size": s, "size_vram": s, "digest": "0" * 64,
                                              "expires_at": expires(n), "context_length": 4096}
                                             for n, s in self.running.items()]})

    async def generate(self, request):
        b = await self._body(request)
        name = b.get("model")
        try:        # the body is decoded (and keep_alive with it) before anything else: a bad one is a 400
            keep = None if b.get("keep_alive") is None else ollama_keep_alive(b["keep_alive"])
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if name not in self.installed:
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        if self.generate_error:
            return web.json_response({"error": self.generate_error[1]}, status=self.generate_error[0])
        if keep == 0 and not b.get("prompt"):
            self._unload(name)
            return web.json_response({"model": name, "response": "", "done": True, "done_reason": "unload"})
        if name not in self.running:
            await asyncio.sleep(self.load_delay_s)
        self._schedule(name, keep)
        if keep == 0:           # a generation with keep_alive 0: unloaded once it is answered
            self._unload(name)
        return web.json_response({"model": name, "response": "ok" if b.get("prompt") else "", "done": True,
                                  "done_reason": "stop" if b.get("prompt") else "load"})

    async def chat(self, request):
        b = await self._body(request)
        name = b.get("model")
        if name not in self.installed:
            return web.json_response({"error": {"message": f"model '{name}' not found", "type": "api_error"}},
                                     status=404)
        self._schedule(name, None)      # a keep_alive in this body is an unknown field to Ollama: ignored
        return web.json_response(_answer(name))


class LmStudioDouble(_Double):
    load_paths = ("/api/v1/models/load",)

    def __init__(self, installed: dict):
        self.installed = dict(installed)     # key -> size in bytes
        self.instances: dict = {}            # instance id -> key
        self.fail_load = None                # a message: the next loads fail (e.g. not enough memory)
        super().__init__()

    def routes(self, app):
        app.router.add_get("/api/v1/models", self.models)
        app.router.add_post("/api/v1/models/load", self.load)
        app.router.add_post("/api/v1/models/unload", self.unload)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.v1_models)   # https://lmstudio.ai/docs/developer/openai-compat

    async def v1_models(self, request):
        return web.json_response({"object": "list", "data": [{"id": k, "object": "model", "owned_by": "organization_owner"}
                                                             for k in self.installed]})

    async def models(self, request):
        out = []
        for k, s in self.installed.items():
            inst = [{"id": i, "config": {"context_length": 4096}} for i, kk in self.instances.items() if kk == k]
            out.append({"type": "llm", "key": k, "display_name": k, "size_bytes": s, "loaded_instances": inst,
                        "max_context_length": 32768, "format": "gguf"})
        return web.json_response({"models": out})

    async def load(self, request):
        b = await self._body(request)
        key = b.get("model")
        if key not in self.installed:
            return web.json_response({"error": {"message": f"model '{key}' not found"}}, status=404)
        await asyncio.sleep(self.load_delay_s)
        if self.fail_load:
            return web.json_response({"error": {"message": self.fail_load}}, status=500)
        n = sum(1 for kk in self.instances.values() if kk == key)
        iid = key if n == 0 else f"{key}:{n + 1}"
        self.instances[iid] = key
        return web.json_response({"type": "llm", "instance_id": iid, "load_time_seconds": self.load_delay_s,
                                  "status": "loaded"})

    async def unload(self, request):
        b = await self._body(request)
        iid = b.get("instance_id")
        if iid not in self.instances:
            return web.json_response({"error": {"message": f"no loaded instance '{iid}'"}}, status=404)
        del self.instances[iid]
        return web.json_response({"instance_id": iid})

    async def chat(self, request):
        b = await self._body(request)
        if b.get("model") not in self.instances.values():     # JIT loading off
            return web.json_response({"error": {"message": f"model '{b.get('model')}' is not loaded"}}, status=400)
        return web.json_response(_answer(b["model"]))


class VllmDouble(_Double):
    load_paths = ("/wake_up",)

    def __init__(self, model: str):
        self.model = model
        self.waiting = 0
        self.running_n = 0
        self.kv = 0.25
        self.sleeping = False
        super().__init__()

    def routes(self, app):
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        app.router.add_get("/is_sleeping", self.is_sleeping)
        app.router.add_post("/sleep", self.sleep)
        app.router.add_post("/wake_up", self.wake)
        app.router.add_post("/v1/chat/completions", self.chat)

    async def health(self, request):
        return web.Response(status=200)

    async def models(self, request):
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model",
                                                              "owned_by": "vllm", "max_model_len": 8192}]})

    async def metrics(self, request):
        lab = f'{{engine="0",model_name="{self.model}"}}'
        text = ("# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                "# TYPE vllm:num_requests_running gauge\n"
                f"vllm:num_requests_running{lab} {float(self.running_n)}\n"
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                "# TYPE vllm:num_requests_waiting gauge\n"
                f"vllm:num_requests_waiting{lab} {float(self.waiting)}\n"
                "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
                "# TYPE vllm:kv_cache_usage_perc gauge\n"
                f"vllm:kv_cache_usage_perc{lab} {self.kv}\n")
        return web.Response(text=text, content_type="text/plain")

    async def is_sleeping(self, request):
        return web.json_response({"is_sleeping": self.sleeping})

    async def sleep(self, request):
        self.calls.append(("POST", "/sleep", None))
        self.sleeping = True
        return web.Response(status=200)

    async def wake(self, request):
        self.calls.append(("POST", "/wake_up", None))
        await asyncio.sleep(self.load_delay_s)
        self.sleeping = False
        return web.Response(status=200)

    async def chat(self, request):
        b = await self._body(request)
        if b.get("model") != self.model:
            return web.json_response({"object": "error", "message": f"The model `{b.get('model')}` does not exist.",
                                      "type": "NotFoundError", "param": None, "code": 404}, status=404)
        if self.sleeping:
            return web.json_response({"object": "error", "message": "engine is sleeping", "type": "ServiceUnavailable",
                                      "code": 503}, status=503)
        return web.json_response(_answer(self.model))
