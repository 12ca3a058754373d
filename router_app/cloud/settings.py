"""The `cloud:` block of a route with `kind: cloud` (see router_app/cloud/__init__.py).

    routes:
      claude:
        kind: cloud
        provider: anthropic            # openai | anthropic | openai_compatible
        url: https://api.anthropic.com/v1
        model: claude-sonnet-4-20250514
        api_key_env: ANTHROPIC_API_KEY # read from the router's 0600 environment file
        terminal: true
        cloud:
          send_images: false           # true: image/audio/file parts may leave the house on this route
          fallback_target: false       # true: other routes may spill / fail over here (keys must still allow it)
          anthropic_version: "2023-06-01"
          default_max_tokens: 4096     # Anthropic requires max_tokens; used when the client sets none
          cooldown_s: 30               # a failed provider is not tried again for this long (429: its Retry-After)
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RouteKind = Literal["local", "cloud"]
Provider = Literal["openai", "anthropic", "openai_compatible"]
PROVIDERS = ("openai", "anthropic", "openai_compatible")


class CloudOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_images: bool = False
    fallback_target: bool = False
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(4096, ge=1)
    cooldown_s: float = Field(30.0, gt=0)


class MoneyBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd_per_day: float | None = Field(None, gt=0)
    usd_per_month: float | None = Field(None, gt=0)


class CloudSite(BaseModel):
    """The top-level `cloud:` key of the router config (spend, budgets, the "saved vs cloud" reference).

        cloud:
          compare_to: anthropic/claude-sonnet-4   # a cloud route's name, or provider/model from the price table
          budgets:                                # money per app (the app a key belongs to), cloud routes only
            default: {usd_per_day: 1.0, usd_per_month: 20.0}
            ide: {usd_per_month: 50.0}
    """
    model_config = ConfigDict(extra="forbid")

    compare_to: str | None = None
    budgets: dict[str, MoneyBudget] = Field(default_factory=dict)
