"""One adapter per engine API. Each lists the engine's models with their states, reads its own load figures, and
loads/unloads a model where the engine can. Parsers are pure functions (unit-tested on the documented shapes).

    openai           GET /v1/models (every listed model is hot)
    vllm             GET /v1/models; GET /metrics (vllm:num_requests_waiting, vllm:num_requests_running,
                     vllm:kv_cache_usage_perc or the older vllm:gpu_cache_usage_perc); sleep mode:
                     POST /sleep, POST /wake_up (https://docs.vllm.ai/en/latest/features/sleep_mode.html)
    ollama           GET /api/tags (installed), GET /api/ps (resident); load = POST /api/generate with no prompt,
                     unload = the same with keep_alive 0 (https://docs.ollama.com/api/ps,
                     https://github.com/ollama/ollama/blob/main/docs/api.md#load-a-model); a load sends the
                     model's own keep_alive (router_app/catalog/keep_alive.py), else -1
    lmstudio         GET /api/v1/models (key, size_bytes, loaded_instances[].id); POST /api/v1/models/load {model};
                     POST /api/v1/models/unload {instance_id} (https://lmstudio.ai/docs/developer/rest/load)
    llamacpp_router  llama-server router mode: GET /models (status.value unloaded|loading|loaded|sleeping, failed),
                     POST /models/load, POST /models/unload {model}; GET /slots?model= (is_processing)
                     (llama.cpp tools/server/README.md, "Using multiple models")
"""
from __future__ import annotations

import re
from urllib.parse import quote
from typing import Optional

import aiohttp
import orjson

from ..decision.durations import is_zero
from .model import FAILED, HOT, LOADING, ON_DISK, SLEEPING, EngineLoad, ModelInfo

MB = 1024 * 1024


class EngineError(Exception):
    """An engine refused or failed a catalog call (the message says which and why)."""


def root_of(url: str) -> str:
    return url[:-3] if url.endswith("/v1") else url


# ------------------------------------------------------------------------------------------------- parsers (pure)
def parse_openai_models(obj) -> dict:
    data = obj.get("data") if isinstance(obj, dict) else None
    out = {}
    for m in data if isinstance(data, list) else ():
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            out[m["id"]] = ModelInfo(m["id"], HOT)
    return out


_METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})?\s+([-+0-9.eE]+|NaN)\s*$")


def parse_vllm_metrics(text: str) -> EngineLoad:
    vals: dict = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            try:
                vals[m.group(1)] = vals.get(m.group(1), 0.0) + float(m.group(2))
            except ValueError:
                pass
    kv = vals.get("vllm:kv_cache_usage_perc", vals.get("vllm:gpu_cache_usage_perc"))
    return EngineLoad(waiting=int(vals.get("vllm:num_requests_waiting", 0)),
                      running=int(vals.get("vllm:num_requests_running", 0)), kv_usage=kv)


def parse_ollama(tags, ps) -> dict:
    out = {}
    for m in (tags or {}).get("models") or ():
        name = m.get("name") or m.get("model")
        if isinstance(name, str):
            out[name] = ModelInfo(name, ON_DISK, int(m.get("size") or 0) // MB)
    for m in (ps or {}).get("models") or ():
        name = m.get("name") or m.get("model")
        if isinstance(name, str):
            size = int(m.get("size_vram") or m.get("size") or 0) // MB
            out[name] = ModelInfo(name, HOT, size or (out[name].size_mb if name in out else 0))
    return out


def parse_lmstudio(obj) -> dict:
    out = {}
    for m in (obj or {}).get("models") or ():
        key = m.get("key")
        if not isinstance(key, str):
            continue
        inst = m.get("loaded_instances") or []
        out[key] = ModelInfo(key, HOT if inst else ON_DISK, int(m.get("size_bytes") or 0) // MB,
                             inst[0].get("id") if inst and isinstance(inst[0], dict) else None)
    return out


_LLAMA_STATES = {"loaded": HOT, "loading": LOADING, "sleeping": SLEEPING, "unloaded": ON_DISK,
                 "downloading": LOADING}


def parse_llamacpp_models(obj) -> dict:
    out = {}
    for m in (obj or {}).get("data") or ():
        mid = m.get("id")
        if not isinstance(mid, str):
            continue
        st = m.get("status") or {}
        state = _LLAMA_STATES.get(st.get("value"), ON_DISK)
        if st.get("failed") and state == ON_DISK:
            state = FAILED
        out[mid] = ModelInfo(mid, state)
    return out


# ------------------------------------------------------------------------------------------------- I/O
class Adapter:
    engine = "openai"
    can_load = False

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: dict, timeout_s: float = 2.0):
        self.session, self.root, self.headers = session, root_of(url), headers
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(self, path: str, text: bool = False):
        async with self.session.get(self.root + path, headers=self.headers, timeout=self.timeout) as r:
            body = await r.read()
            if r.status != 200:
                raise EngineError(f"GET {path} answered {r.status}")
            return body.decode("utf-8", "replace") if text else orjson.loads(body)

    async def _post(self, path: str, body: dict, timeout_s: float):
        to = aiohttp.ClientTimeout(total=timeout_s)
        async with self.session.post(self.root + path, data=orjson.dumps(body), timeout=to,
                                     headers={**self.headers, "Content-Type": "application/json"}) as r:
            raw = await r.read()
            if r.status >= 300:
                raise EngineError(f"POST {path} answered {r.status}: {raw[:200].decode('utf-8', 'replace')}")
            return raw

    async def models(self) -> dict:
        return parse_openai_models(await self._get("/v1/models"))

    async def load_figures(self, models: dict) -> Optional[EngineLoad]:
        return None

    async def load(self, info: ModelInfo, timeout_s: float) -> None:
        raise EngineError(f"{self.engine} engines are pinned: the router cannot load '{info.name}'")

    async def unload(self, info: ModelInfo, timeout_s: float) -> None:
        raise EngineError(f"{self.engine} engines are pinned: the router cannot unload '{info.name}'")


class VllmAdapter(Adapter):
    engine = "vllm"

    async def models(self) -> dict:
        out = await super().models()
        try:
            s = await self._get("/is_sleeping")     # served with VLLM_SERVER_DEV_MODE=1 (sleep mode)
        except (EngineError, ValueError):
            return out
        if isinstance(s, dict) and s.get("is_sleeping"):
            for m in out.values():
                m.state = SLEEPING
        return out

    async def load_figures(self, models: dict) -> Optional[EngineLoad]:
        return parse_vllm_metrics(await self._get("/metrics", text=True))

    async def load(self, info: ModelInfo, timeout_s: float) -> None:
        await self._post("/wake_up", {}, timeout_s)

    async def unload(self, info: ModelInfo, timeout_s: float) -> None:
        await self._post("/sleep", {"level": 1}, timeout_s)


class OllamaAdapter(Adapter):
    engine = "ollama"
    can_load = True
    # model -> its route's keep_alive (router_app/catalog/keep_alive.py; set by the registry). A model without one is
    # loaded with -1 (forever): the catalog unloads it (idle_ttl_s, eviction). keep_alive 0 is not sent on a load:
    # with no prompt Ollama reads it as "unload".
    keep_alive: dict = {}

    async def models(self) -> dict:
        return parse_ollama(await self._get("/api/tags"), await self._get("/api/ps"))

    async def load(self, info: ModelInfo, timeout_s: float) -> None:
        ka = self.keep_alive.get(info.name, -1)
        body = {"model": info.name, "stream": False} if is_zero(ka) else \
            {"model": info.name, "keep_alive": ka, "stream": False}
        await self._post("/api/generate", body, timeout_s)

    async def keep(self, name: str, keep_alive, timeout_s: float) -> None:
        """Sets a loaded model's keep_alive (loads it when it is not), or unloads it for 0 (docs/api.md)."""
        await self._post("/api/generate", {"model": name, "keep_alive": keep_alive, "stream": False}, timeout_s)

    async def unload(self, info: ModelInfo, timeout_s: float) -> None:
        await self._post("/api/generate", {"model": info.name, "keep_alive": 0, "stream": False}, timeout_s)


class LmStudioAdapter(Adapter):
    engine = "lmstudio"
    can_load = True

    async def models(self) -> dict:
        return parse_lmstudio(await self._get("/api/v1/models"))

    async def load(self, info: ModelInfo, timeout_s: float) -> None:
        await self._post("/api/v1/models/load", {"model": info.name}, timeout_s)

    async def unload(self, info: ModelInfo, timeout_s: float) -> None:
        if not info.instance:
            raise EngineError(f"LM Studio lists no loaded instance of '{info.name}'")
        await self._post("/api/v1/models/unload", {"instance_id": info.instance}, timeout_s)


class LlamaCppRouterAdapter(Adapter):
    engine = "llamacpp_router"
    can_load = True

    async def models(self) -> dict:
        return parse_llamacpp_models(await self._get("/models"))

    async def load_figures(self, models: dict) -> Optional[EngineLoad]:
        running = 0
        for m in models.values():
            if m.state == HOT:
                slots = await self._get("/slots?autoload=false&model=" + quote(m.name, safe=""))  # never wakes a model
                running += sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing"))
        return EngineLoad(waiting=0, running=running)

    async def load(self, info: ModelInfo, timeout_s: float) -> None:
        try:
            await self._post("/models/load", {"model": info.name}, timeout_s)
        except EngineError as exc:
            if "already running" not in str(exc):      # llama-server's 400 for a model that is loaded
                raise

    async def unload(self, info: ModelInfo, timeout_s: float) -> None:
        await self._post("/models/unload", {"model": info.name}, timeout_s)


ADAPTERS = {"openai": Adapter, "vllm": VllmAdapter, "ollama": OllamaAdapter, "lmstudio": LmStudioAdapter,
            "llamacpp_router": LlamaCppRouterAdapter}
