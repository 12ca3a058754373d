"""Upstream engines: per-route runtime state (slots, queue, health, drain), the shared HTTP client, health probes."""
from __future__ import annotations

import asyncio
import collections
import os
import time
from typing import Optional

import aiohttp

from ..cloud.providers import auth_headers, hooks_for
from ..decision.config import Route, RouterConfig
from ..ops.telemetry import now_iso


class RouteState:
    """Live state of one route. Survives reloads (matched by name); its settings are refreshed in place."""

    __slots__ = ("name", "cfg", "max_concurrency", "max_queue", "queue_timeout_s", "in_flight", "_waiters",
                 "healthy", "drained", "last_error", "last_error_at", "last_ok_at", "base_url", "health_url",
                 "models_url", "headers", "timeout", "consecutive_failures", "requests_total", "hooks", "cloud_until",
                 "engine_busy", "hub_drained", "recheck")

    def __init__(self, name: str, cfg: Route):
        self.name = name
        self.in_flight = 0
        self._waiters: collections.deque = collections.deque()
        self.healthy = True          # optimistic until a request or probe says otherwise
        self.drained = False         # an operator's drain (POST /admin/drain, persisted in router-state.json)
        self.hub_drained: Optional[str] = None   # the hub's drain: the stale node it is on (router_app/hub/drains.py)
        self.last_error: Optional[str] = None
        self.last_error_at: Optional[float] = None
        self.last_ok_at: Optional[float] = None
        self.consecutive_failures = 0
        self.requests_total = 0
        self.cloud_until = 0.0       # a cloud route that failed is not tried again before this time (issue 18)
        self.engine_busy = False     # issue 14: the engine's own queue is over busy_waiting (router_app/catalog)
        self.recheck = False         # a request took it down: the health checker probes it again soon (recheck_s)
        self.apply(cfg)

    def apply(self, cfg: Route) -> None:
        self.cfg = cfg
        self.max_concurrency = cfg.max_concurrency
        self.max_queue = cfg.max_queue
        self.queue_timeout_s = cfg.queue_timeout_s
        self.base_url = cfg.url
        root = cfg.url[:-3] if cfg.url.endswith("/v1") else cfg.url
        self.health_url = root + "/health"
        self.models_url = cfg.url + "/models"
        h = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if cfg.kind == "cloud":
            h.update(auth_headers(cfg, key))
        elif key:
            h["Authorization"] = "Bearer " + key
        self.headers = h
        self.hooks = hooks_for(cfg)   # None for local engines
        self.timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=cfg.connect_timeout_s,
                                             sock_read=cfg.first_byte_timeout_s)
        # a raised cap may free waiters
        self._wake()

    # ----------------------------------------------------------------------------- slots
    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        if self.in_flight < self.max_concurrency and not self._waiters and not self.engine_busy:
            self.in_flight += 1
            return True
        return False

    async def acquire_queued(self) -> bool:
        """Waits for a slot when the queue has room; False when the queue is full or the wait timed out."""
        if len(self._waiters) >= self.max_queue:
            return False
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.queue_timeout_s)
            return True
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if fut.done() and not fut.cancelled():
                # the slot was handed to us at the last moment: give it back
                self.release()
            else:
                fut.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        finally:
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.max_concurrency:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(True)

    # ----------------------------------------------------------------------------- health
    def mark_down(self, error: str) -> bool:
        """Returns True when this call took the route down (it was healthy)."""
        was = self.healthy
        self.healthy = False
        self.last_error = error
        self.last_error_at = time.time()
        self.consecutive_failures += 1
        return was

    def usable(self) -> bool:
        """Healthy; a cloud route (never probed: nothing leaves the house for a probe) comes back once its
        cool-down (cloud.cooldown_s, or the provider's Retry-After) has passed."""
        if not self.healthy and self.cfg.kind == "cloud" and time.time() >= self.cloud_until:
            self.mark_up()
        return self.healthy

    def mark_up(self) -> None:
        self.healthy = True
        self.consecutive_failures = 0
        self.last_ok_at = time.time()

    def snapshot(self) -> dict:
        return {
            "url": self.base_url, "model": self.cfg.model, "healthy": self.healthy, "drained": self.drained,
            "drained_by_hub": self.hub_drained,
            "in_flight": self.in_flight, "queued": self.queued, "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue, "vision": self.cfg.vision, "terminal": self.cfg.terminal,
            "last_error": self.last_error, "last_error_at": self.last_error_at, "last_ok_at": self.last_ok_at,
        }


def mark_route_down(st: RouteState, detail: str, logs, hold_s: Optional[float] = None) -> None:
    """Marks a route down after a failed request; the transition goes to router-events.jsonl, as probes' do.
    A cloud route stays down for `hold_s` (a 429's Retry-After) or its cloud.cooldown_s."""
    if st.cfg.kind == "cloud":
        cool = st.cfg.cloud.cooldown_s if st.cfg.cloud else 30.0
        st.cloud_until = time.time() + (hold_s if hold_s is not None else cool)
    if st.mark_down(detail):
        st.recheck = st.cfg.kind != "cloud"
        logs.events.write({"ts": now_iso(), "event": "health", "route": st.name, "healthy": False,
                           "detail": detail, "source": "request"})


def build_states(cfg: RouterConfig, old: Optional[dict] = None) -> dict:
    """Route states for a config; existing states (same name) are kept, so counters, drains and health survive."""
    old = old or {}
    out = {}
    for name, r in cfg.routes.items():
        st = old.get(name)
        if st is None:
            st = RouteState(name, r)
        else:
            st.apply(r)
        out[name] = st
    return out


def new_session() -> aiohttp.ClientSession:
    # Idle pooled connections are dropped after 4 s: llama-server (cpp-httplib) and uvicorn (vLLM) close theirs after
    # 5 s, and reusing one the engine is closing is a lost request (attempt.stale_connection retries that case too).
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=4, ttl_dns_cache=300,
                                     enable_cleanup_closed=False)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
                                 json_serialize=None, timeout=aiohttp.ClientTimeout(total=None))


async def probe(session: aiohttp.ClientSession, st: RouteState, timeout_s: float) -> tuple[bool, str]:
    """Engine /health, else /v1/models. -> (ok, detail)."""
    if st.cfg.kind == "cloud":   # issue 18: no probe leaves the house; a cloud route is up once its cool-down ends
        ok = st.usable()
        return ok, "cloud route: up" if ok else f"cloud route: cooling down for {st.cloud_until - time.time():.0f}s"
    to = aiohttp.ClientTimeout(total=timeout_s)
    hdrs = {k: v for k, v in st.headers.items() if k == "Authorization"}
    try:
        async with session.get(st.health_url, headers=hdrs, timeout=to) as r:
            await r.read()
            if r.status == 200:
                return True, "health 200"
            if r.status not in (404, 405, 501):
                return False, f"health answered {r.status}"
        async with session.get(st.models_url, headers=hdrs, timeout=to) as r:
            await r.read()
            if r.status == 200:
                return True, "models 200"
            return False, f"models answered {r.status}"
    except asyncio.TimeoutError:
        return False, f"probe timed out after {timeout_s}s"
    except aiohttp.ClientError as exc:
        return False, f"probe failed: {type(exc).__name__}: {exc}"
    except OSError as exc:
        return False, f"probe failed: {exc}"


class HealthChecker:
    """Probes every route every `interval_s`; a failed probe marks it down, a good one brings it back."""

    def __init__(self, get_runtime, session: aiohttp.ClientSession, on_change=None):
        self._get_runtime = get_runtime
        self._session = session
        self._task: Optional[asyncio.Task] = None
        self._on_change = on_change

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def check_all(self) -> None:
        rt = self._get_runtime()
        hc = rt.config.health
        states = list(rt.states.values())
        results = await asyncio.gather(*(probe(self._session, st, hc.timeout_s) for st in states),
                                       return_exceptions=True)
        for st, res in zip(states, results):
            if isinstance(res, BaseException):
                ok, detail = False, f"probe error: {res}"
            else:
                ok, detail = res
            was = st.healthy
            if ok:
                st.mark_up()
            else:
                st.mark_down(detail)
            if was != st.healthy and self._on_change:
                self._on_change(st, detail)

    async def recheck(self) -> None:
        """Probes, once, the routes a failed request took down since the last tick. One reset connection (an engine
        restarting, a network blip) must not keep a healthy engine out of rotation for a whole interval."""
        rt = self._get_runtime()
        states = [st for st in rt.states.values() if st.recheck]
        for st in states:
            st.recheck = False
        results = await asyncio.gather(*(probe(self._session, st, rt.config.health.timeout_s) for st in states),
                                       return_exceptions=True)
        for st, res in zip(states, results):
            if not isinstance(res, BaseException) and res[0] and not st.healthy:
                st.mark_up()
                if self._on_change:
                    self._on_change(st, f"re-probe after a failed request: {res[1]}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = 0.0
        while True:
            hc = self._get_runtime().config.health
            try:
                if loop.time() >= next_full:
                    next_full = loop.time() + hc.interval_s
                    await self.check_all()
                else:
                    await self.recheck()
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            await asyncio.sleep(max(0.05, min(hc.recheck_s, next_full - loop.time())))
