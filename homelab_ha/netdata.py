"""Reading a Netdata parent and turning its charts into a curated set of per-host sensors.

Netdata REST API v1 (https://learn.netdata.cloud/docs/rest-api/ , the agent's swagger at /api/v1/ in 1.37):
``GET /api/v1/info`` (``mirrored_hosts``), and per host, through the parent, ``GET /host/<name>/api/v1/charts``
(``{"charts": {id: {"context", "units", "dimensions"}}}``) and ``GET /host/<name>/api/v1/allmetrics?format=json``
(``{id: {"context", "units", "last_updated", "dimensions": {dim: {"name", "value"}}}}``).

A sensor is offered only when its chart is in /charts *and* allmetrics gives it a number (probing: no ghost
sensors for hardware a node does not have). GPU charts come from the python.d (1.37) or go.d nvidia_smi collector;
both context spellings are known. Unified-memory nodes (Spark) get no GPU-memory sensor: their RAM sensor is it.
"""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional


class NetdataError(RuntimeError):
    pass


class NetdataClient:
    def __init__(self, base_url: str, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str) -> dict:
        url = self.base_url + path
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as r:  # noqa: S310 - URL from the config
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise NetdataError(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise NetdataError(f"{url}: {e}") from None

    def _host(self, host: str) -> str:
        return "/host/" + urllib.parse.quote(host, safe="")

    def mirrored_hosts(self) -> list[str]:
        return list(self._get("/api/v1/info").get("mirrored_hosts") or [])

    def charts(self, host: str) -> dict:
        return self._get(self._host(host) + "/api/v1/charts").get("charts") or {}

    def allmetrics(self, host: str) -> dict:
        return self._get(self._host(host) + "/api/v1/allmetrics?format=json")


# ------------------------------------------------------------------------------------------------ extractors
def _dims(chart: dict) -> dict[str, float]:
    out = {}
    for key, d in (chart.get("dimensions") or {}).items():
        v = d.get("value") if isinstance(d, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[d.get("name") or key] = float(v)
    return out


def _first(chart: dict) -> Optional[float]:
    d = _dims(chart)
    return next(iter(d.values()), None)


def _sum_but_idle(chart: dict) -> Optional[float]:
    d = _dims(chart)
    return sum(v for k, v in d.items() if k != "idle") if d else None


def _used_pct(chart: dict) -> Optional[float]:
    d = _dims(chart)
    total = sum(d.values())
    return 100.0 * d["used"] / total if "used" in d and total > 0 else None


def _dim(name: str) -> Callable[[dict], Optional[float]]:
    return lambda chart: _dims(chart).get(name)


@dataclass(frozen=True)
class SensorSpec:
    key: str                 # state JSON key and unique_id suffix
    name: str                # entity name shown in Home Assistant
    unit: str
    extract: Callable[[dict], Optional[float]]
    device_class: Optional[str] = None
    icon: Optional[str] = None


HOST_SENSORS: dict[str, list[SensorSpec]] = {    # chart id -> sensors
    "system.cpu": [SensorSpec("cpu", "CPU", "%", _sum_but_idle, icon="mdi:cpu-64-bit")],
    "system.ram": [SensorSpec("ram_pct", "RAM used", "%", _used_pct, icon="mdi:memory"),
                   SensorSpec("ram_used", "RAM used (MiB)", "MiB", _dim("used"), device_class="data_size")],
    "system.load": [SensorSpec("load1", "Load (1 min)", "", _dim("load1"), icon="mdi:speedometer")],
    "disk_space._": [SensorSpec("disk_root_pct", "Disk / used", "%", _used_pct, icon="mdi:harddisk")],
}

# context (python.d 1.37 | go.d) -> (kind, name, unit, extractor, device_class)
GPU_CONTEXTS = {
    "nvidia_smi.gpu_utilization": ("util", "utilisation", "%", _first, None),
    "nvidia_smi.memory_allocated": ("mem", "memory used", "%", _used_pct, None),
    "nvidia_smi.gpu_frame_buffer_memory_usage": ("mem", "memory used", "%", _used_pct, None),
    "nvidia_smi.temperature": ("temp", "temperature", "°C", _first, "temperature"),
    "nvidia_smi.gpu_temperature": ("temp", "temperature", "°C", _first, "temperature"),
    "nvidia_smi.power": ("power", "power", "W", _first, "power"),
    "nvidia_smi.gpu_power_draw": ("power", "power", "W", _first, "power"),
}


def _gpu_id(chart_id: str, context: str) -> str:
    tail = context.split(".", 1)[1]
    local = chart_id.split(".", 1)[1] if "." in chart_id else chart_id
    return local[: -len(tail) - 1] if local.endswith("_" + tail) else local


def probe(charts: dict, metrics: dict, unified_memory: bool = False) -> dict[str, tuple[str, SensorSpec]]:
    """The sensors this host really exposes: {sensor key: (chart id, spec)}."""
    found: dict[str, tuple[str, SensorSpec]] = {}
    for chart_id, specs in HOST_SENSORS.items():
        if chart_id in charts and chart_id in metrics:
            for s in specs:
                if s.extract(metrics[chart_id]) is not None:
                    found[s.key] = (chart_id, s)
    gpus = sorted({_gpu_id(cid, c.get("context", "")) for cid, c in charts.items()
                   if c.get("context") in GPU_CONTEXTS})
    for cid, c in charts.items():
        ctx = c.get("context")
        if ctx not in GPU_CONTEXTS or cid not in metrics:
            continue
        kind, label, unit, fn, dc = GPU_CONTEXTS[ctx]
        if kind == "mem" and unified_memory:
            continue    # unified memory: the RAM sensor is the GPU's memory
        gid = _gpu_id(cid, ctx)
        index = gpus.index(gid)
        spec = SensorSpec(f"gpu{index}_{kind}", f"GPU {index} {label}", unit, fn, device_class=dc,
                          icon="mdi:expansion-card")
        if fn(metrics[cid]) is not None:
            found[spec.key] = (cid, spec)
    return found


def read_state(found: dict[str, tuple[str, SensorSpec]], metrics: dict) -> tuple[dict, Optional[float]]:
    """(state JSON, newest last_updated among the charts used)."""
    state, newest = {}, None
    for key, (cid, spec) in found.items():
        chart = metrics.get(cid)
        if not chart:
            continue
        v = spec.extract(chart)
        if v is not None:
            state[key] = round(v, 2)
        lu = chart.get("last_updated")
        if isinstance(lu, (int, float)):
            newest = lu if newest is None else max(newest, lu)
    return state, newest
