"""Config models for access control (keys, budgets, audit, prices, structured outputs, browser origins).

These are fields of ``RouterConfig`` (router_app/decision/config.py imports them):

    auth: auto            # auto: enforce once the store holds a key | required | off
    store_path: ./state/router.sqlite3
    log_prompts: false    # audit lines carry prompt text only when true
    audit_log: {max_bytes: 52428800, keep: 5}
    default_reserve_tokens: 1024   # reserved for the answer when a request sets no max_tokens
    ledger_keep_days: 400          # ledger rows older than this are pruned (null: never)
    prices:               # cost-equivalent per route, USD per million tokens
      brain: {input_per_mtok: 3.0, output_per_mtok: 15.0}
    structured:
      escalate_to: brain  # default: the terminal route
      fail_closed_buckets: [vision]   # camera/safety buckets; others get the engine's answer untouched
      envelope: {action: escalate, reason: schema_validation_failed}
    cors:                 # browser origins allowed on /v1/* (router_app/v1/cors.py serves it)
      allow_origins: ["https://chat.home.example"]   # exact scheme://host[:port]; "*" allows any
      max_age_s: 600
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditLog(_Strict):
    max_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    keep: int = Field(5, ge=0)


class Price(_Strict):
    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class Structured(_Strict):
    escalate_to: Optional[str] = None
    # Buckets whose structured answers fail closed (escalate, then the envelope). Route pins count when the
    # pinned route is one of these buckets' routes. Everyone else gets the engine's answer untouched.
    fail_closed_buckets: list[str] = Field(default_factory=lambda: ["vision"])
    envelope: dict[str, Any] = Field(
        default_factory=lambda: {"action": "escalate", "reason": "schema_validation_failed"})


AuthMode = Literal["auto", "required", "off"]

DEFAULT_STORE_PATH = "./state/router.sqlite3"


class AccessSettings(_Strict):
    """The access-control keys of the router config, gathered in one object."""
    auth: AuthMode = "auto"
    store_path: str = DEFAULT_STORE_PATH
    log_prompts: bool = False
    audit_log: AuditLog = Field(default_factory=AuditLog)
    default_reserve_tokens: int = Field(1024, ge=0)
    ledger_keep_days: Optional[int] = Field(400, ge=62)   # null: keep every row; >= 62 keeps month budgets exact
    prices: dict[str, Price] = Field(default_factory=dict)
    structured: Structured = Field(default_factory=Structured)


ACCESS_KEYS = tuple(AccessSettings.model_fields)


def settings_from(cfg: Any) -> AccessSettings:
    """Build AccessSettings from a RouterConfig whether the access keys are
    declared fields or extras (``extra='allow'``)."""
    data: dict[str, Any] = {}
    extra = getattr(cfg, "model_extra", None) or {}
    for k in ACCESS_KEYS:
        if k in extra:
            data[k] = extra[k]
        elif hasattr(cfg, k):
            v = getattr(cfg, k)
            data[k] = v.model_dump() if isinstance(v, BaseModel) else (
                {kk: (vv.model_dump() if isinstance(vv, BaseModel) else vv) for kk, vv in v.items()}
                if isinstance(v, dict) else v)
    return AccessSettings.model_validate(data)


def resolve_store_path(s: AccessSettings, cfg: Any) -> str:
    """Relative store paths are relative to the config file's directory."""
    import os
    p = os.path.expanduser(s.store_path)
    src = getattr(cfg, "source_path", None)
    if not os.path.isabs(p) and src:
        p = os.path.join(os.path.dirname(os.path.abspath(src)), p)
    return p


class Cors(_Strict):
    allow_origins: list[str] = Field(default_factory=list)
    max_age_s: int = Field(600, ge=0)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for o in v:
            o = str(o).strip().rstrip("/")
            if o != "*" and not (o.startswith("http://") or o.startswith("https://")):
                raise ValueError(f"'{o}': an origin is scheme://host[:port] (or '*')")
            if o != "*" and "/" in o.split("://", 1)[1]:
                raise ValueError(f"'{o}': an origin has no path")
            out.append(o)
        return out
