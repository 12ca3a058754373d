"""Provider list prices, USD per million tokens (input, output), and the cost arithmetic.

Sources (list prices for standard, non-batch, non-cached calls; check them when you add a model):
  OpenAI     https://openai.com/api/pricing/
  Anthropic  https://docs.anthropic.com/en/docs/about-claude/pricing
A route's own `prices.<route>` entry in the router config always wins over this table; a cloud route whose model
is in neither is priced at 0 and `check-config` says so (see router_app/cloud/privacy.py: config_errors).
Dated model ids match their family (claude-sonnet-4-20250514 -> claude-sonnet-4) by longest prefix.
"""
from __future__ import annotations

from typing import Any, Optional

LIST_PRICES: dict[str, dict[str, tuple[float, float]]] = {
    "openai": {
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "o3": (2.00, 8.00),
        "o4-mini": (1.10, 4.40),
    },
    "anthropic": {
        "claude-opus-4": (15.00, 75.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-3-7-sonnet": (3.00, 15.00),
        "claude-3-5-sonnet": (3.00, 15.00),
        "claude-3-5-haiku": (0.80, 4.00),
        "claude-3-haiku": (0.25, 1.25),
    },
}


def list_price(provider: Optional[str], model: str) -> Optional[tuple[float, float]]:
    table = LIST_PRICES.get(provider or "", {})
    best = None
    for name, price in table.items():
        if (model == name or model.startswith(name + "-")) and (best is None or len(name) > len(best[0])):
            best = (name, price)
    return best[1] if best else None


def route_price(cfg: Any, route: str) -> Optional[tuple[float, float]]:
    """The price of one route: its `prices:` entry, else (cloud routes) the provider's list price."""
    p = (getattr(cfg, "prices", None) or {}).get(route)
    if p is not None:
        return (p.input_per_mtok, p.output_per_mtok)
    r = cfg.routes.get(route)
    if r is not None and r.kind == "cloud":
        return list_price(r.provider, r.model)
    return None


def reference_price(cfg: Any, ref: Optional[str]) -> Optional[tuple[float, float]]:
    """The price "saved vs cloud" compares with: a cloud route's name, or provider/model from the list."""
    if not ref:
        return None
    if ref in cfg.routes:
        return route_price(cfg, ref)
    provider, _, model = ref.partition("/")
    return list_price(provider, model)


def cost(price: Optional[tuple[float, float]], prompt_tokens: int, completion_tokens: int) -> float:
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
