"""Metrics (a small Prometheus text registry + a JSON view) and size-rotated JSONL logs.

Logs never contain prompt or completion text: only the decision, the route taken, status, latency and token counts.
"""
from __future__ import annotations

import bisect
import os
import threading
import time
from typing import Iterable, Optional

import orjson

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OVERHEAD_BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0)


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple, values: tuple) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_esc(v)}"' for n, v in zip(names, values)) + "}"


class Counter:
    __slots__ = ("name", "help", "labelnames", "values")

    def __init__(self, name: str, help: str, labelnames: tuple = ()):
        self.name, self.help, self.labelnames = name, help, labelnames
        self.values: dict = {}

    def inc(self, labels: tuple = (), n: float = 1) -> None:
        v = self.values
        v[labels] = v.get(labels, 0) + n

    def render(self, out: list) -> None:
        out.append(f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter\n")
        for k, v in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labelnames, k)} {v}\n")

    def as_json(self):
        if not self.labelnames:
            return self.values.get((), 0)
        return [dict(zip(self.labelnames, k), value=v) for k, v in sorted(self.values.items())]


class Histogram:
    __slots__ = ("name", "help", "labelnames", "bounds", "series")

    def __init__(self, name: str, help: str, labelnames: tuple = (), buckets: tuple = LATENCY_BUCKETS):
        self.name, self.help, self.labelnames, self.bounds = name, help, labelnames, tuple(buckets)
        self.series: dict = {}

    def observe(self, labels: tuple, value: float) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [[0] * (len(self.bounds) + 1), 0.0, 0]
        s[0][bisect.bisect_left(self.bounds, value)] += 1
        s[1] += value
        s[2] += 1

    def render(self, out: list) -> None:
        out.append(f"# HELP {self.name} {self.help}\n# TYPE {self.name} histogram\n")
        for k, (counts, total, n) in sorted(self.series.items()):
            acc = 0
            base = list(zip(self.labelnames, k))
            for b, c in zip(self.bounds + (float("inf"),), counts):
                acc += c
                le = "+Inf" if b == float("inf") else repr(b)
                lab = "{" + ",".join([f'{a}="{_esc(v)}"' for a, v in base] + [f'le="{le}"']) + "}"
                out.append(f"{self.name}_bucket{lab} {acc}\n")
            out.append(f"{self.name}_sum{_labels(self.labelnames, k)} {total}\n")
            out.append(f"{self.name}_count{_labels(self.labelnames, k)} {n}\n")

    def as_json(self):
        res = []
        for k, (counts, total, n) in sorted(self.series.items()):
            res.append(dict(zip(self.labelnames, k), count=n, sum=round(total, 6),
                            mean=round(total / n, 6) if n else None))
        return res


class Metrics:
    def __init__(self):
        self.started = time.time()
        self.requests = Counter("homelab_router_requests_total", "Requests answered, by endpoint, route, bucket and status.",
                                ("endpoint", "route", "bucket", "status"))
        self.decisions = Counter("homelab_router_decisions_total", "Routing decisions by bucket, route and reason.",
                                 ("bucket", "route", "reason"))
        self.spills = Counter("homelab_router_spills_total", "Saturated traffic moved to another route.", ("from", "to"))
        self.failovers = Counter("homelab_router_failovers_total", "Traffic moved off a down or failing route.",
                                 ("from", "to"))
        self.upstream_failures = Counter("homelab_router_upstream_failures_total",
                                         "Connect errors, timeouts and 5xx per route.", ("route", "kind"))
        self.rejected = Counter("homelab_router_rejected_total", "Requests refused by the router itself.",
                                ("status", "code"))
        self.tokens = Counter("homelab_router_tokens_total", "Tokens reported by upstream usage.", ("route", "type"))
        self.reloads = Counter("homelab_router_config_reloads_total", "Config reload attempts.", ("result",))
        self.latency = Histogram("homelab_router_request_duration_seconds",
                                 "Time from request to the end of the response, per route.", ("route",))
        self.ttfb = Histogram("homelab_router_upstream_first_byte_seconds",
                              "Upstream time to response headers (first chunk for streams).", ("route",))
        self.overhead = Histogram("homelab_router_overhead_ms", "Router processing time excluding upstream and queue.",
                                  (), OVERHEAD_BUCKETS_MS)
        self._all = (self.requests, self.decisions, self.spills, self.failovers, self.upstream_failures,
                     self.rejected, self.tokens, self.reloads, self.latency, self.ttfb, self.overhead)

    def render(self, states: dict) -> str:
        out: list = []
        for m in self._all:
            m.render(out)
        for name, help_, fn in (
            ("homelab_router_route_in_flight", "Requests in flight per route.", lambda s: s.in_flight),
            ("homelab_router_route_queued", "Requests waiting for a slot per route.", lambda s: s.queued),
            ("homelab_router_route_healthy", "1 when the route is healthy.", lambda s: int(s.healthy)),
            ("homelab_router_route_drained", "1 when an operator drained the route.", lambda s: int(s.drained)),
            ("homelab_router_route_hub_drained", "1 when the hub drained the route (its node is stale).",
             lambda s: int(bool(s.hub_drained))),
            ("homelab_router_route_max_concurrency", "Configured concurrency cap.", lambda s: s.max_concurrency),
        ):
            out.append(f"# HELP {name} {help_}\n# TYPE {name} gauge\n")
            for rname in sorted(states):
                out.append(f'{name}{{route="{_esc(rname)}"}} {fn(states[rname])}\n')
        out.append("# HELP homelab_router_uptime_seconds Seconds since start.\n# TYPE homelab_router_uptime_seconds gauge\n")
        out.append(f"homelab_router_uptime_seconds {time.time() - self.started:.3f}\n")
        return "".join(out)

    def as_json(self, states: dict) -> dict:
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "requests": self.requests.as_json(),
            "decisions": self.decisions.as_json(),
            "spills": self.spills.as_json(),
            "failovers": self.failovers.as_json(),
            "upstream_failures": self.upstream_failures.as_json(),
            "rejected": self.rejected.as_json(),
            "tokens": self.tokens.as_json(),
            "reloads": self.reloads.as_json(),
            "latency_seconds": self.latency.as_json(),
            "upstream_first_byte_seconds": self.ttfb.as_json(),
            "overhead_ms": self.overhead.as_json(),
            "routes": {n: {"in_flight": s.in_flight, "queued": s.queued, "healthy": s.healthy, "drained": s.drained,
                           "drained_by_hub": s.hub_drained}
                       for n, s in sorted(states.items())},
        }


class JsonlLog:
    """Append-only JSON lines, buffered and flushed about once a second, rotated when the file passes max_bytes
    (name -> name.1 -> ... -> name.<backups>)."""

    def __init__(self, path: str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fh = None
        self._size = 0
        self._dirty = False

    def _open(self) -> None:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=256 * 1024)
        try:
            self._size = os.fstat(self._fh.fileno()).st_size
        except OSError:
            self._size = 0

    def write(self, record: dict) -> None:
        line = orjson.dumps(record, default=str) + b"\n"
        with self._lock:
            try:
                if self._fh is None:
                    self._open()
                if self._size + len(line) > self.max_bytes and self._size > 0:
                    self._rotate()
                self._fh.write(line)
                self._size += len(line)
                self._dirty = True
            except OSError:
                pass   # logging must never break serving

    def _rotate(self) -> None:
        self._fh.close()
        for i in range(self.backups - 1, 0, -1):
            src, dst = f"{self.path}.{i}", f"{self.path}.{i + 1}"
            if os.path.exists(src):
                os.replace(src, dst)
        if self.backups > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._open()

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None and self._dirty:
                try:
                    self._fh.flush()
                except OSError:
                    pass
                self._dirty = False

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class Logs:
    FILES = {"decisions": "router-decisions.jsonl", "failures": "upstream-failures.jsonl",
             "events": "router-events.jsonl", "admin": "admin-audit.jsonl"}

    def __init__(self, log_dir: str, max_bytes: int, backups: int):
        self.dir = log_dir
        for attr, name in self.FILES.items():
            setattr(self, attr, JsonlLog(os.path.join(log_dir, name), max_bytes, backups))

    def reconfigure(self, log_dir: str, max_bytes: int, backups: int) -> None:
        """A reload's log settings: new rotation limits apply at once; a new directory gets fresh files (the old
        ones are flushed and closed)."""
        for attr, name in self.FILES.items():
            log: JsonlLog = getattr(self, attr)
            with log._lock:
                log.max_bytes, log.backups = max_bytes, backups
            if log_dir != self.dir:
                setattr(self, attr, JsonlLog(os.path.join(log_dir, name), max_bytes, backups))
                log.close()
        self.dir = log_dir

    def all(self) -> Iterable[JsonlLog]:
        return (self.decisions, self.failures, self.events, self.admin)

    def flush(self) -> None:
        for l in self.all():
            l.flush()

    def close(self) -> None:
        for l in self.all():
            l.close()


def now_iso(t: Optional[float] = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
