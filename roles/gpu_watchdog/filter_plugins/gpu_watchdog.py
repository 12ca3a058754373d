"""Turn inventory engine entries into the watchdog's probe targets."""
from __future__ import annotations

# runtime -> (unit name pattern, health path); None in the pattern means one unit per host.
_RUNTIMES = {
    "vllm": ("vllm-{route}.service", "/health"),
    "llama_server": ("llama-server-{route}.service", "/health"),
    "ollama": ("ollama.service", "/api/version"),
    "lmstudio": ("lmstudio.service", "/v1/models"),
}


def gpu_watchdog_targets(engines, address, grace=None):
    grace = grace or {}
    targets, seen = [], set()
    for e in engines or []:
        runtime = e.get("runtime")
        if runtime not in _RUNTIMES or not e.get("port"):
            continue
        unit_fmt, path = _RUNTIMES[runtime]
        unit = unit_fmt.format(route=e.get("route", ""))
        if unit in seen:
            continue
        seen.add(unit)
        host = address if ":" not in str(address) else f"[{address}]"
        targets.append({"unit": unit, "runtime": runtime, "route": e.get("route"),
                        "url": f"http://{host}:{e['port']}{path}",
                        "grace_s": int(grace.get(runtime, 120))})
    return targets


class FilterModule:
    def filters(self):
        return {"gpu_watchdog_targets": gpu_watchdog_targets}
