"""Filters for the node agents (roles/homelab_agent) and the hub's side of them (the router config's hub.agents).

* ``host | homelab_agent_token(token_dir)``: the node's agent token, made on the control node the first time
  (256 random bits, a 0600 file in a 0700 directory, git-ignored .artifacts/ by default) and read afterwards, so the
  agent role (which writes it 0600 on the node) and the router role (which stores only its sha256) agree whatever
  order they run in.
* ``hosts | homelab_agent_hub_entries(hostvars, token_dir)``: ``{host: {token_sha256, routes}}`` for hub.agents.
* ``engines | homelab_agent_engines(address)``: the agent's engine list (name, systemd unit, route, health URL),
  with the unit names the engine roles use (as the gpu_watchdog role's targets).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".artifacts" / "homelab-agent-tokens"
_UNITS = {"vllm": ("vllm-{route}.service", "/health"), "llama_server": ("llama-server-{route}.service", "/health"),
          "ollama": ("ollama.service", "/api/version"), "lmstudio": ("lmstudio.service", "/v1/models")}


def homelab_agent_token(host: str, token_dir: str = "") -> str:
    d = Path(token_dir) if token_dir else DEFAULT_DIR
    if "/" in host or host.startswith("."):
        raise ValueError(f"homelab_agent_token: bad host name {host!r}")
    path = d / f"{host}.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def homelab_agent_hub_entries(hosts, hostvars, token_dir: str = "") -> dict:
    out = {}
    for h in hosts or []:
        routes = [e["route"] for e in (hostvars.get(h, {}).get("engines") or []) if e.get("route")]
        out[h] = {"token_sha256": hashlib.sha256(homelab_agent_token(h, token_dir).encode()).hexdigest(),
                  "routes": routes}
    return out


def homelab_agent_engines(engines, address: str = "127.0.0.1") -> list:
    out, seen = [], set()
    host = address if ":" not in str(address) else f"[{address}]"
    for e in engines or []:
        if e.get("runtime") not in _UNITS or not e.get("route"):
            continue
        unit_fmt, path = _UNITS[e["runtime"]]
        unit = unit_fmt.format(route=e["route"])
        item = {"name": unit.removesuffix(".service"), "unit": unit, "route": e["route"]}
        if e.get("port"):
            item["health_url"] = f"http://{host}:{e['port']}{path}"
        if unit not in seen:
            seen.add(unit)
            out.append(item)
    return out


class FilterModule:
    def filters(self):
        return {"homelab_agent_token": homelab_agent_token, "homelab_agent_hub_entries": homelab_agent_hub_entries,
                "homelab_agent_engines": homelab_agent_engines}
