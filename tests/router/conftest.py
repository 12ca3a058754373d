import asyncio
import os
import pathlib
import sys
import threading
import time

import httpx
import pytest
import uvicorn
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from engine import Engine, free_port  # noqa: E402

from router_app.v1.app import create_app  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "router_app" / "examples" / "four-node.yaml"
MODELS = {"eyes": "qwen2.5-vl-7b-router-awq", "hands": "glm-4.5-air-awq", "brain": "qwen3.6-35b-a3b-fp8",
          "mouth": "gemma-4-31b"}


def example_dict() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def rig_config(engines: dict, tmp_path, mutate=None) -> dict:
    cfg = example_dict()
    for name, r in cfg["routes"].items():
        r["url"] = engines[name].url
        r.pop("api_key_env", None)
        r["connect_timeout_s"] = 2
        r["first_byte_timeout_s"] = 5
        r["queue_timeout_s"] = 2
    cfg["admin_key_env"] = "TEST_ROUTER_ADMIN_KEY_UNSET"
    cfg["log_dir"] = str(tmp_path / "logs")
    cfg["health"] = {"interval_s": 3600, "timeout_s": 1, "recheck_s": 3600}   # probes only when a test asks
    if mutate:
        mutate(cfg)
    return cfg


class RouterServer:
    def __init__(self, config_path: str):
        self.config_path = config_path
        self.app = create_app(config_path=config_path)
        self.port = free_port()
        conf = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning",
                              access_log=False, http="httptools", loop="asyncio")
        self.server = uvicorn.Server(conf)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="router")
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("router did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.app.loop).result(timeout)

    def sync(self):
        """Return once the router's event loop has finished the step it is in.

        A /v1 handler accounts for a call (decision line, metrics, audit line, releasing the key's reservation) in
        the same event-loop step that sent the response's last bytes: there is no await in between. So the next
        request the router serves always sees that accounting, but a test thread that reads the log or the store
        directly can run while the router thread is between the last send and the write. A no-op queued on the
        loop after the client has read the response runs only after that step."""
        async def noop():
            return None
        self.call(noop())

    def flush_logs(self):
        self.sync()
        self.app.logs.flush()

    def probe(self):
        """Run one round of active health checks now."""
        self.call(self.app.health.check_all())

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


def engine_rig(cls=Engine):
    """One engine per route of the example rig (a generator for fixtures: yields them, then closes them)."""
    es = {name: cls(name, model) for name, model in MODELS.items()}
    try:
        yield es
    finally:
        for e in es.values():
            e.close()


@pytest.fixture(scope="session")
def engines():
    yield from engine_rig()


def _routers(engs: dict, tmp_path, base: dict | None = None):
    """Yields make(mutate=None, config_dict=None, **overrides) -> a RouterServer over `engs`; stops them all after."""
    started = []

    def make(mutate=None, config_dict=None, **overrides):
        for e in engs.values():
            e.reset()
        cfg = config_dict if config_dict is not None else rig_config(engs, tmp_path, mutate)
        cfg.update(base or {})
        cfg.update(overrides)
        path = tmp_path / f"router-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        r = RouterServer(str(path))
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()
    for e in engs.values():
        e.reset()


@pytest.fixture
def make_router(engines, tmp_path):
    yield from _routers(engines, tmp_path)


@pytest.fixture
def router(make_router):
    return make_router()


@pytest.fixture
def client(router):
    with httpx.Client(base_url=router.url, timeout=15) as c:
        yield c


def chat(client, text, model="homelab/auto", headers=None, image=False, **extra):
    content = text
    if image:
        content = [{"type": "text", "text": text},
                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def tool_engines():
    """Loopback engines that can answer with tool calls (tool_engine.ToolEngine), one set per test module."""
    from tool_engine import ToolEngine
    yield from engine_rig(ToolEngine)


@pytest.fixture
def tool_router(tool_engines, tmp_path):
    """tool_router(**config_overrides) -> a RouterServer over the tool engines, with a key store; all stopped after."""
    yield from _routers(tool_engines, tmp_path, {"store_path": str(tmp_path / "state" / "router.sqlite3")})
