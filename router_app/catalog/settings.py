"""Catalog configuration (validated with the rest of the router config at load/reload time).

A route opts in with a `catalog:` block; routes without one are not catalogued and behave exactly as before.

    routes:
      small:
        url: http://127.0.0.1:8080/v1
        model: tiny-alpha
        catalog:
          engine: llamacpp_router   # openai | vllm | ollama | lmstudio | llamacpp_router
          residency: on_demand      # pinned: never loaded or evicted by the router (seed 003's vLLM nodes)
          max_resident: 2
          idle_ttl_s: 600
          vram_mb: 8192
          gpu_group: card0          # routes sharing one card: one engine resident at a time (seed 000)
    catalog:
      refresh_s: 5
      stale_s: 15
      wait_s: 60
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Engine = Literal["openai", "vllm", "ollama", "lmstudio", "llamacpp_router"]
Residency = Literal["pinned", "on_demand"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteCatalog(_Strict):
    engine: Engine = "openai"
    residency: Residency = "pinned"
    max_resident: int = Field(0, ge=0)        # 0: no count limit
    idle_ttl_s: float = Field(0.0, ge=0)      # 0: never unloaded for idleness
    vram_mb: int = Field(0, ge=0)             # the card's capacity; 0: unknown (count limit only)
    gpu_group: Optional[str] = None
    # the cards (nvidia-smi index) of the node agent's report that this engine uses; None: all of the node's cards.
    # Fresh agent figures replace vram_mb and the learned sizes in the VRAM ledger (router_app/catalog/vram.py).
    gpu_cards: Optional[list[int]] = None
    load_timeout_s: float = Field(120.0, gt=0)
    busy_waiting: int = Field(0, ge=0)        # engine queue depth at which the route counts as busy; 0: off
    sleep_wake: bool = False                  # vLLM: unload = POST /sleep, load = POST /wake_up


class CatalogSettings(_Strict):
    refresh_s: float = Field(5.0, gt=0)       # background refresh period
    stale_s: float = Field(15.0, gt=0)        # engine figures older than this are ignored (own in-flight count)
    wait_s: float = Field(60.0, gt=0)         # the longest a request waits for a load
    retry_after_s: int = Field(30, ge=1)
    # a stream that waits for a load gets ": loading <model> on <route>" (an SSE comment) before its first token
    stream_loading_notice: bool = True      # Retry-After on the 503 for an installed model with no live node
    # apps (API key names) whose unknown model names go to the keyword policy instead of a 404; the global switch
    # is route_unknown_models
    route_unknown_models_apps: list[str] = Field(default_factory=list)
