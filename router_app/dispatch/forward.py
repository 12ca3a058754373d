"""Dispatch: take a Decision to an engine, honouring caps, bounded queues, spill and failover.

  * A route at its cap queues up to max_queue (bounded by queue_timeout_s), then spills (reason <route>_saturated).
  * A route marked down, or an engine failure before the first byte (router_app/dispatch/attempt.py: connect error,
    timeout, deadline, 5xx, a 200 that is not what was asked for) -> failover (<route>_down); the route is marked
    down until an active probe succeeds.
  * An engine's 4xx is the client's answer: passed through unchanged, no failover, no health mark.
  * Nothing is retried once a byte has gone to the client (the api only sends after `forward` returns).
  * Chains end at a terminal route; unavailable/busy there -> 503 with Retry-After and x-should-retry: false.
  * Images never move to a route without vision; drained and forbidden routes are skipped on every hop.
  * A slot taken here is given back on every path out, exceptions and cancellation included; a stream's slot
    travels with its Outcome, whose close() gives it back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

import aiohttp
import orjson

from ..decision.config import RouterConfig
from ..decision.policy import Decision, Policy
from ..errors import ApiError
from ..ops.telemetry import Logs, Metrics, now_iso
from .attempt import EngineFailure, Outcome, attempt_twice_on_a_dropped_connection
from .upstreams import mark_route_down


@dataclass
class Runtime:
    """Everything a request needs, swapped atomically on reload (a request keeps the one it started with)."""
    config: RouterConfig
    policy: Policy
    states: dict
    generation: int = 1
    drained: frozenset = frozenset()

    def refresh_drained(self) -> None:
        # auto-routing skips a route drained by an operator or by the hub (its node went stale); the two are kept apart
        self.drained = frozenset(n for n, s in self.states.items() if s.drained or s.hub_drained)


def route_error(status: int, message: str, code: str, route: str, reason: str, hops: list,
                retry_after: Optional[int] = None) -> ApiError:
    headers = {}
    if status == 503:       # the router has already tried every fallback: SDKs must not retry on their own
        headers = {"Retry-After": str(retry_after or 1), "x-should-retry": "false"}
    err = ApiError(status, message, type="server_error" if status >= 500 else "invalid_request_error", code=code,
                   headers=headers)
    err.route, err.reason, err.hops = route, reason, hops  # type: ignore[attr-defined]
    return err


def _move_on(counter, hops: list, route: str, event: str, nxt: Optional[str], reason: str, what: str, code: str,
             retry_after: int) -> str:
    """Leaves `route` (a spill or a failover): records the hop and the move, and returns the next route, or raises
    the 503 when there is none."""
    hops.append({"route": route, "event": event})
    counter.inc((route, nxt or "503"))
    if nxt is None:
        raise route_error(503, f"route '{route}' {what} and no fallback can take this request", code, route, reason,
                          hops, retry_after)
    return nxt


def next_route(rt: Runtime, start: str, kind: str, has_image: bool, allowed: Optional[frozenset],
               visited: set) -> Optional[str]:
    """The next usable route after `start` for a spill or a failover (skipping blind/drained/forbidden/visited)."""
    policy: Policy = rt.policy
    cand = policy.spill[(start, has_image)] if kind == "spill" else policy.failover.get(start)
    seen = set()
    while cand is not None and cand not in seen:
        seen.add(cand)
        st = rt.states.get(cand)
        if (st is not None and cand not in visited and (not has_image or policy.vision[cand])
                and (allowed is None or cand in allowed) and not st.drained
                and (cand not in policy.cloud or (allowed is not None and cand in allowed))):   # issue 18
            return cand
        cand = policy.failover.get(cand)
    return None


def _cloud_wait(st) -> int:
    """Seconds until a cloud route that failed is tried again (its provider's Retry-After or cooldown); 0: local."""
    return max(1, int(st.cloud_until - time.time() + 0.999)) if st.cfg.kind == "cloud" else 0


class _Timing:
    __slots__ = ("upstream_s", "queue_s")

    def __init__(self):
        self.upstream_s = 0.0
        self.queue_s = 0.0


async def forward(rt: Runtime, session: aiohttp.ClientSession, metrics: Metrics, logs: Logs, d: Decision,
                  path: str, build_body: Callable[[object], bytes], stream: bool, allowed: Optional[frozenset],
                  req_id: str, fallback: bool = True, timing=None,
                  before: Optional[Callable[[str], Awaitable[None]]] = None) -> Outcome:
    """Sends the request along the decision's route and its spill/failover chain. Raises ApiError (503).

    `before(route)` runs before a route's slot is taken (the catalog makes the route's own model resident there,
    router_app/catalog/glue.py); an ApiError from it moves the request on along the failover chain when it may fall
    back (reason `<route>_load_failed`), and is the answer otherwise.

    `timing` (any object with float `upstream_s` and `queue_s`) is charged with the time spent in every attempt,
    failed ones included, and in queues, so the caller can tell its own overhead apart."""
    route = d.route
    reason = d.reason
    has_image = d.has_image
    hops: list = []
    visited: set = set()
    tm = timing if timing is not None else _Timing()
    retry_after = max(1, int(rt.config.health.interval_s + 0.999))
    perf = time.perf_counter
    while True:
        visited.add(route)
        st = rt.states[route]
        # ---- known down: straight to the failover
        if not st.usable():
            nxt = next_route(rt, route, "failover", has_image, allowed, visited) if fallback else None
            reason = f"{route}_down"
            wait = _cloud_wait(st) or retry_after     # a cloud route: its cool-down (it is never probed)
            route = _move_on(metrics.failovers, hops, route, "down", nxt, reason, "is unavailable",
                             "route_unavailable", wait)
            continue
        # ---- the route's model, before a slot is held for it (a load may take a while)
        if before is not None:
            try:
                await before(route)
            except ApiError as err:
                nxt = next_route(rt, route, "failover", has_image, allowed, visited) if fallback else None
                if nxt is None:
                    raise
                hops.append({"route": route, "event": err.code or "load_failed"})
                metrics.failovers.inc((route, nxt))
                reason = f"{route}_load_failed"
                route = nxt
                continue
        # ---- capacity
        if not st.try_acquire():
            ok = False
            if st.max_queue > 0:
                tq = perf()
                try:
                    ok = await st.acquire_queued()    # gives a last-moment slot back itself when cancelled
                finally:
                    tm.queue_s += perf() - tq
            if not ok:
                nxt = next_route(rt, route, "spill", has_image, allowed, visited) if fallback else None
                reason = f"{route}_saturated"
                route = _move_on(metrics.spills, hops, route, "saturated", nxt, reason,
                                 f"is busy (all {st.max_concurrency} slots in use)", "route_busy",
                                 1 if st.max_queue == 0 else retry_after)
                continue
        # ---- send: from here the slot on `st` is ours until `held` is cleared
        held = True
        t_up = perf()
        failure: Optional[EngineFailure] = None
        try:
            try:
                data = build_body(st)
            except (TypeError, orjson.JSONEncodeError) as exc:
                raise ApiError(400, f"request body cannot be re-encoded: {exc}", code="invalid_request") from None
            headers = st.headers
            if req_id:
                headers = {**headers, "X-Request-Id": req_id}
            try:
                out = await attempt_twice_on_a_dropped_connection(session, st, path, data, headers, stream)
            except EngineFailure as f:
                failure = f
            else:
                out.route, out.reason, out.hops = route, reason, hops
                out.upstream_s = perf() - t_up
                out.queue_s = tm.queue_s
                st.requests_total += 1
                metrics.ttfb.observe((route,), out.upstream_s)
                if out.resp is not None:      # a stream: the slot goes with the outcome
                    out.state = st
                    held = False
                return out
        finally:
            tm.upstream_s += perf() - t_up
            if held:
                st.release()
        # ---- failure before the first byte reached the client: mark down and fail over
        kind, detail = failure.kind, failure.detail
        hold = detail.get("retry_after")       # a provider's 429 (issue 18)
        mark_route_down(st, f"{kind}: {detail}", logs, hold)
        metrics.upstream_failures.inc((route, kind))
        nxt = next_route(rt, route, "failover", has_image, allowed, visited) if fallback else None
        logs.failures.write({"ts": now_iso(), "id": req_id, "route": route, "kind": kind, **detail,
                             "elapsed_ms": round((perf() - t_up) * 1000, 2), "failover_to": nxt})
        reason = f"{route}_down"
        route = _move_on(metrics.failovers, hops, route, kind, nxt, reason, f"failed ({kind})", "route_unavailable",
                         _cloud_wait(st) or retry_after)
