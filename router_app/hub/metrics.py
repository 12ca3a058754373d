"""Prometheus series for nodes and commands, appended to the router's /metrics."""
from __future__ import annotations

import time


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(hub) -> str:
    now = time.time()
    nodes = hub.nodes()
    lines = ["# HELP homelab_hub_node_up 1 while the node's agent heartbeats, 0 when stale or never seen.",
             "# TYPE homelab_hub_node_up gauge"]
    lines += [f'homelab_hub_node_up{{node="{_esc(n["node"])}"}} {1 if n["state"] == "healthy" else 0}' for n in nodes]
    lines += ["# HELP homelab_hub_node_heartbeat_age_seconds Seconds since the node's last heartbeat.",
              "# TYPE homelab_hub_node_heartbeat_age_seconds gauge"]
    lines += [f'homelab_hub_node_heartbeat_age_seconds{{node="{_esc(n["node"])}"}} {now - n["last_heartbeat"]:.1f}'
              for n in nodes if n.get("last_heartbeat")]
    gpu_series = (("memory_used_mib", "homelab_hub_gpu_memory_used_mib", "GPU memory used (MiB)"),
                  ("memory_total_mib", "homelab_hub_gpu_memory_total_mib", "GPU memory (MiB)"),
                  ("utilization_pct", "homelab_hub_gpu_utilization_percent", "GPU utilisation (%)"),
                  ("temperature_c", "homelab_hub_gpu_temperature_celsius", "GPU temperature"),
                  ("power_w", "homelab_hub_gpu_power_watts", "GPU power draw"))
    for key, name, help_ in gpu_series:
        lines += [f"# HELP {name} {help_}, from the node agent.", f"# TYPE {name} gauge"]
        for n in nodes:
            for g in n.get("gpus") or []:
                if isinstance(g, dict) and isinstance(g.get(key), (int, float)):
                    lines.append(f'{name}{{node="{_esc(n["node"])}",gpu="{_esc(g.get("index"))}"}} {g[key]}')
    lines += ["# HELP homelab_hub_commands Commands in the store by kind and status.",
              "# TYPE homelab_hub_commands gauge"]
    lines += [f'homelab_hub_commands{{kind="{_esc(k)}",status="{_esc(s)}"}} {c}' for k, s, c in hub.store.command_counts()]
    lat = sorted(hub.delivery_latency)
    if lat:
        lines += ["# HELP homelab_hub_command_delivery_seconds_p95 Queued-to-delivered time, p95 of the last 1000.",
                  "# TYPE homelab_hub_command_delivery_seconds_p95 gauge",
                  f"homelab_hub_command_delivery_seconds_p95 {lat[min(len(lat) - 1, int(0.95 * len(lat)))]:.3f}"]
    lines += ["# HELP homelab_hub_heartbeats_total Heartbeats received since start.",
              "# TYPE homelab_hub_heartbeats_total counter", f"homelab_hub_heartbeats_total {hub.heartbeats}"]
    return "\n".join(lines) + "\n"
