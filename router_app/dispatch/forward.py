"""Dispatch: take a Decision to an engine, honouring caps, bounded queues, spill and failover.

  * A route at its cap queues up to max_queue (bounded by queue_timeout_s), then spills (reason <route>_saturated).
  * A route marked down, a connect failure, a timeout or a 5xx before the first byte -> failover (<route>_down) and
    the route is marked down until an active probe succeeds.
  * An engine's 4xx is the client's answer: passed through unchanged, no failover, no health mark.
  * Nothing is retried once a byte has gone to the client (the api only sends after `forward` returns).
  * Chains end at a terminal route; unavailable/busy there -> 503 with Retry-After (never a quiet downgrade).
  * Images never move to a route without vision; drained and forbidden routes are skipped on every hop.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, Optional

import aiohttp
import orjson

from ..errors import ApiError
from ..decision.config import RouterConfig
from ..decision.policy import Decision, Policy
from ..ops.telemetry import Logs, Metrics, now_iso


@dataclass
class Runtime:
    """Everything a request needs, swapped atomically on reload (a request keeps the one it started with)."""
    config: RouterConfig
    policy: Policy
    states: dict
    generation: int = 1
    drained: frozenset = frozenset()

    def refresh_drained(self) -> None:
        self.drained = frozenset(n for n, s in self.states.items() if s.drained)


class Outcome:
    __slots__ = ("status", "content_type", "body", "first_chunk", "resp", "state", "route", "reason", "hops",
                 "upstream_s", "queue_s", "extra_headers")

    def __init__(self):
        self.status = 0
        self.content_type = b"application/json"
        self.body = b""
        self.first_chunk = None
        self.resp: Optional[aiohttp.ClientResponse] = None
        self.state = None         # RouteState whose slot this outcome still holds (streams)
        self.route = ""
        self.reason = ""
        self.hops: list = []
        self.upstream_s = 0.0
        self.queue_s = 0.0
        self.extra_headers: list = []

    def close(self) -> None:
        if self.resp is not None:
            self.resp.release()
            self.resp = None
        if self.state is not None:
            self.state.release()
            self.state = None


def route_error(status: int, message: str, code: str, route: str, reason: str, hops: list,
                retry_after: Optional[int] = None) -> ApiError:
    err = ApiError(status, message, type="server_error" if status >= 500 else "invalid_request_error", code=code,
                   headers={"Retry-After": str(retry_after)} if retry_after else None)
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
                and (allowed is None or cand in allowed) and not st.drained):
            return cand
        cand = policy.failover.get(cand)
    return None


def _error_kind(body: bytes) -> dict:
    """type/code of an engine error body (never its message: it may quote the prompt)."""
    try:
        obj = orjson.loads(body)
        e = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(e, dict):
            return {"type": e.get("type"), "code": e.get("code")}
    except Exception:
        pass
    return {}


async def forward(rt: Runtime, session: aiohttp.ClientSession, metrics: Metrics, logs: Logs, d: Decision,
                  path: str, build_body: Callable[[object], bytes], stream: bool, allowed: Optional[frozenset],
                  req_id: str, fallback: bool = True) -> Outcome:
    """Sends the request along the decision's route and its spill/failover chain. Raises ApiError (503)."""
    route = d.route
    reason = d.reason
    has_image = d.has_image
    hops: list = []
    visited: set = set()
    queue_s = 0.0
    retry_after = max(1, int(rt.config.health.interval_s + 0.999))
    perf = time.perf_counter
    while True:
        visited.add(route)
        st = rt.states[route]
        # ---- known down: straight to the failover
        if not st.healthy:
            nxt = next_route(rt, route, "failover", has_image, allowed, visited) if fallback else None
            reason = f"{route}_down"
            route = _move_on(metrics.failovers, hops, route, "down", nxt, reason, "is unavailable",
                             "route_unavailable", retry_after)
            continue
        # ---- capacity
        if not st.try_acquire():
            ok = False
            if st.max_queue > 0:
                tq = perf()
                ok = await st.acquire_queued()
                queue_s += perf() - tq
            if not ok:
                nxt = next_route(rt, route, "spill", has_image, allowed, visited) if fallback else None
                reason = f"{route}_saturated"
                route = _move_on(metrics.spills, hops, route, "saturated", nxt, reason,
                                 f"is busy (all {st.max_concurrency} slots in use)", "route_busy",
                                 1 if st.max_queue == 0 else retry_after)
                continue
        # ---- send (we hold a slot on `st`)
        data = build_body(st)
        t_up = perf()
        kind = detail = None
        resp = None
        try:
            resp = await session.post(st.base_url + path, data=data, headers=st.headers, timeout=st.timeout)
            if resp.status >= 500:
                body = await resp.read()
                kind, detail = "http_5xx", {"status": resp.status, **_error_kind(body)}
            elif stream and resp.status == 200:
                first = await resp.content.readany()
                out = Outcome()
                out.status = 200
                out.content_type = resp.headers.get("Content-Type", "text/event-stream").encode("latin-1")
                out.first_chunk = first
                out.resp = resp
                out.state = st
                out.route, out.reason, out.hops = route, reason, hops
                out.upstream_s = perf() - t_up
                out.queue_s = queue_s
                st.requests_total += 1
                metrics.ttfb.observe((route,), out.upstream_s)
                return out
            else:
                body = await resp.read()
                out = Outcome()
                out.status = resp.status
                ct = resp.headers.get("Content-Type")
                if ct:
                    out.content_type = ct.encode("latin-1")
                out.body = body
                ce = resp.headers.get("Content-Encoding")
                if ce and ce != "identity":      # we asked for identity; pass any encoding on as it came
                    out.extra_headers.append((b"content-encoding", ce.encode("latin-1")))
                out.route, out.reason, out.hops = route, reason, hops
                out.upstream_s = perf() - t_up
                out.queue_s = queue_s
                resp.release()
                st.release()
                st.requests_total += 1
                metrics.ttfb.observe((route,), out.upstream_s)
                return out
        except asyncio.TimeoutError:
            kind, detail = "timeout", {"error": "no answer within the timeout"}
        except aiohttp.ClientConnectorError as exc:
            kind, detail = "connect", {"error": f"{type(exc).__name__}: {exc.os_error or exc}"}
        except (aiohttp.ClientError, OSError) as exc:
            kind, detail = "connection", {"error": f"{type(exc).__name__}: {exc}"}
        except BaseException:
            if resp is not None:
                resp.release()
            st.release()
            raise
        # ---- failure before the first byte reached the client: mark down and fail over
        if resp is not None:
            resp.release()
        st.release()
        msg = f"{kind}: {detail}"
        st.mark_down(msg)
        metrics.upstream_failures.inc((route, kind))
        nxt = next_route(rt, route, "failover", has_image, allowed, visited) if fallback else None
        logs.failures.write({"ts": now_iso(), "id": req_id, "route": route, "kind": kind, **detail,
                             "elapsed_ms": round((perf() - t_up) * 1000, 2), "failover_to": nxt})
        reason = f"{route}_down"
        route = _move_on(metrics.failovers, hops, route, kind, nxt, reason, f"failed ({kind})", "route_unavailable",
                         retry_after)
