"""The node's figures for the heartbeat: GPUs (nvidia-smi), CPU, memory, disks, engines. Standard library only
(deployed next to homelab_agent.py by roles/homelab_agent)."""
from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request

GPU_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "utilization.gpu", "temperature.gpu",
              "power.draw")
GPU_KEYS = ("index", "name", "uuid", "memory_total_mib", "memory_used_mib", "utilization_pct", "temperature_c",
            "power_w")


def _num(v: str):
    v = v.strip()
    try:
        return float(v) if "." in v else int(v)
    except ValueError:
        return None                       # "[N/A]", "[Not Supported]"


def gpus(nvidia_smi: str) -> tuple:
    exe = shutil.which(nvidia_smi)
    if not exe:
        return [], None
    try:
        out = subprocess.run([exe, f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi: {exc}"
    if out.returncode != 0:
        return [], f"nvidia-smi exit {out.returncode}: {out.stderr.strip()[:200]}"
    cards = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(GPU_FIELDS):
            continue
        card = dict(zip(GPU_KEYS, parts))
        for k in GPU_KEYS[3:] + ("index",):
            card[k] = _num(card[k])
        cards.append(card)
    return cards, None


class Cpu:
    def __init__(self):
        self.prev = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as fh:
                f = [int(x) for x in fh.readline().split()[1:]]
            return sum(f), f[3] + (f[4] if len(f) > 4 else 0)
        except (OSError, ValueError, IndexError):
            return None

    def sample(self) -> dict:
        cur = self._read()
        pct = None
        if cur and self.prev and cur[0] > self.prev[0]:
            total, idle = cur[0] - self.prev[0], cur[1] - self.prev[1]
            pct = round(100.0 * (total - idle) / total, 1)
        self.prev = cur
        load = os.getloadavg() if hasattr(os, "getloadavg") else (None,)
        return {"percent": pct, "count": os.cpu_count(), "load1": load[0]}


def memory() -> dict:
    info = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in ("MemTotal", "MemAvailable"):
                    info[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable")}


def disks(paths) -> list:
    out = []
    for p in paths:
        try:
            st = os.statvfs(p)
        except OSError as exc:
            out.append({"path": p, "error": str(exc)})
            continue
        out.append({"path": p, "total_bytes": st.f_blocks * st.f_frsize, "free_bytes": st.f_bavail * st.f_frsize})
    return out


def engines(entries) -> list:
    out = []
    systemctl = shutil.which("systemctl")
    for e in entries:
        item = {"name": e["name"], "route": e.get("route"), "unit": e.get("unit")}
        if e.get("unit") and systemctl:
            try:
                r = subprocess.run([systemctl, "is-active", e["unit"]], capture_output=True, text=True, timeout=5)
                item["active"] = r.stdout.strip() or "unknown"
            except (OSError, subprocess.TimeoutExpired):
                item["active"] = "unknown"
        if e.get("health_url"):
            try:
                with urllib.request.urlopen(e["health_url"], timeout=2) as resp:
                    item["healthy"] = 200 <= resp.status < 300
            except (OSError, urllib.error.URLError):
                item["healthy"] = False
        out.append(item)
    return out
