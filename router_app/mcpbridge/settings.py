"""The ``mcp:`` section of the router config (the bridge reads the same file as the router).

    mcp:
      listen: {host: 127.0.0.1, port: 8092}
      router_url: http://127.0.0.1:4000      # default: the router's own listen address (0.0.0.0 -> 127.0.0.1)
      allowed_hosts: ["gateway.lan:8092"]    # Host headers accepted besides loopback (DNS-rebinding protection)
      allowed_origins: []                    # browser Origins accepted (none by default)
      nodes:                                 # compiled from the inventory by the router role (optional)
        gpu1: {address: 192.0.2.10, engines: [{route: brain, runtime: vllm, port: 8000}]}

Every key is optional. Unknown keys are refused with the path of the bad key. The files infra_list/infra_read may
fetch are not set here: each node's agent serves its own allowlist (homelab_agent_infra_paths), through the hub.
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..decision.config import ConfigError, RouterConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8092, ge=1, le=65535)


class NodeEngine(_Strict):
    route: Optional[str] = None
    runtime: Optional[str] = None        # vllm, llama_server, ollama, lmstudio...
    port: Optional[int] = Field(None, ge=1, le=65535)
    url: Optional[str] = None            # base URL (…/v1); default http://<address>:<port>/v1


class Node(_Strict):
    address: Optional[str] = None
    engines: list[NodeEngine] = Field(default_factory=list)
    ollama_url: Optional[str] = None     # Ollama's native API base (no /v1)


class BridgeSettings(_Strict):
    listen: Listen = Field(default_factory=Listen)
    router_url: Optional[str] = None
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    nodes: dict[str, Node] = Field(default_factory=dict)


class BridgeConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def bridge_settings(cfg: RouterConfig) -> BridgeSettings:
    raw = cfg.extra("mcp", None) or {}
    try:
        return BridgeSettings.model_validate(raw)
    except ValidationError as exc:
        raise BridgeConfigInvalid([ConfigError("mcp." + ".".join(str(p) for p in e["loc"]), e["msg"])
                                   for e in exc.errors()]) from None


def router_base_url(cfg: RouterConfig, s: BridgeSettings) -> str:
    if s.router_url:
        return s.router_url.rstrip("/")
    host = cfg.listen.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{cfg.listen.port}"
