"""Router configuration: schema (pydantic), loading and semantic validation.

Public API (see CONTRACTS.md):
    load_config(path) -> RouterConfig          raises ConfigInvalid(.errors: list[ConfigError])
    validate_dict(data) -> list[ConfigError]    schema + semantic checks, never raises for bad data

Pydantic is used only here, at load/reload time; the request path never validates with it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..access.config import DEFAULT_STORE_PATH, AuditLog, AuthMode, Cors, Price, Structured
from ..cloud import privacy as cloud_privacy
from ..cloud.settings import CloudOptions, Provider, RouteKind
from ..catalog.settings import CatalogSettings, RouteCatalog
from ..hub.config import HubSettings
from . import durations
from .graph import find_cycle
from .yamlload import load_yaml

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
AUTO_MODEL = "homelab/auto"
BUCKET_PREFIX = "homelab/"
UNKNOWN_BUCKET = "unknown"
VISION_BUCKET = "vision"


@dataclass(frozen=True)
class ConfigError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid config")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)


class SpillTargets(_Strict):
    text: Optional[str] = None
    image: Optional[str] = None


class Route(_Strict):
    url: str
    model: str
    api_key_env: Optional[str] = None
    vision: bool = False
    aliases: list[str] = Field(default_factory=list)
    max_concurrency: int = Field(4, ge=1)
    max_queue: int = Field(0, ge=0)
    queue_timeout_s: float = Field(30.0, gt=0)
    spill: Union[str, SpillTargets, None] = None
    failover: Optional[str] = None
    terminal: bool = False
    embeddings: bool = False
    embeddings_model: Optional[str] = None   # model id sent for /v1/embeddings (default: model)
    connect_timeout_s: float = Field(5.0, gt=0)
    # Idle read timeout: the longest silence allowed between two reads from the engine.
    first_byte_timeout_s: float = Field(600.0, gt=0)
    # Deadline for the answer to start: response headers, and for streams the first SSE bytes.
    first_token_timeout_s: float = Field(300.0, gt=0)
    # Deadline for the whole answer (a stream is cut with an SSE error event when it passes).
    total_timeout_s: float = Field(900.0, gt=0)
    # The engine honours stream_options.include_usage: the router may ask for the usage chunk on streams
    # (and strips it again when the client did not ask). Off: stream_options are sent only as the client wrote them.
    stream_usage: bool = False
    # issue 18: a cloud route (router_app/cloud): who answers, and its options (router_app/cloud/settings.py)
    kind: RouteKind = "local"
    provider: Optional[Provider] = None
    cloud: Optional[CloudOptions] = None
    # issue 14: the engine's models are catalogued (router_app/catalog); None: not catalogued, as before
    catalog: Optional[RouteCatalog] = None
    # issue 12: an Ollama route: how long the engine keeps this route's model loaded (router_app/decision/durations.py)
    keep_alive: Optional[Union[int, str]] = None

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, v):
        return None if v is None else durations.check(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _cloud_usage(self) -> "Route":
        if self.kind == "cloud" and "stream_usage" not in self.model_fields_set:
            self.stream_usage = True      # every cloud kind sends the usage chunk (the translator always does)
        return self

    def spill_target(self, has_image: bool) -> Optional[str]:
        """Where saturated traffic goes: the spill entry for this modality, else the failover."""
        s = self.spill
        if isinstance(s, str):
            return s
        if isinstance(s, SpillTargets):
            t = s.image if has_image else s.text
            if t:
                return t
        return self.failover


class Bucket(_Strict):
    route: str
    keywords: list[str] = Field(default_factory=list)

    @field_validator("keywords")
    @classmethod
    def _kw(cls, v: list[str]) -> list[str]:
        out = []
        for k in v:
            k = " ".join(str(k).split()).lower()
            if not k:
                raise ValueError("empty keyword")
            out.append(k)
        return out


class Promotion(_Strict):
    over_tokens: int = Field(..., ge=0)
    route: str


class Embeddings(_Strict):
    route: str


class Health(_Strict):
    interval_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    # a route a failed request took down is probed again this soon (not a full interval later)
    recheck_s: float = Field(1.0, gt=0)


class Logs(_Strict):
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    backups: int = Field(5, ge=0)


class RouterConfig(BaseModel):
    # Top level allows extra keys: the access-control layer (auth, store_path, prices, ...) reads its own.
    model_config = ConfigDict(extra="allow")

    listen: Listen = Field(default_factory=Listen)
    admin_key_env: Optional[str] = None
    log_dir: str = "./logs"
    logs: Logs = Field(default_factory=Logs)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    routes: dict[str, Route]
    buckets: dict[str, Bucket]
    tie_break: list[str] = Field(default_factory=list)
    size_promotions: dict[str, list[Promotion]] = Field(default_factory=dict)
    embeddings: Optional[Embeddings] = None
    health: Health = Field(default_factory=Health)
    route_unknown_models: bool = False   # true: unknown model names go to the classifier instead of a 404
    cors: Cors = Field(default_factory=Cors)   # browser origins allowed on /v1/* (router_app/v1/cors.py)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)   # router_app/catalog/settings.py

    # access control: keys, budgets, audit, prices, structured outputs (router_app/README-access.md)
    auth: AuthMode = "auto"
    store_path: str = DEFAULT_STORE_PATH
    log_prompts: bool = False
    audit_log: AuditLog = Field(default_factory=AuditLog)
    default_reserve_tokens: int = Field(1024, ge=0)
    ledger_keep_days: Optional[int] = Field(400, ge=62)
    prices: dict[str, Price] = Field(default_factory=dict)
    structured: Structured = Field(default_factory=Structured)
    # control plane: node registry, command queue, events (router_app/hub, router_app/README.md "The hub")
    hub: HubSettings = Field(default_factory=HubSettings)

    # set by load_config (not part of the file)
    source_path: Optional[str] = Field(default=None, exclude=True)

    def extra(self, key: str, default: Any = None) -> Any:
        return (self.model_extra or {}).get(key, default)


# ---------------------------------------------------------------------------------------------------------------

def _loc(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            # skip pydantic's union discriminator labels
            if p in ("str", "SpillTargets", "function-after[_url(), str]"):
                continue
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "<root>"


def _schema_errors(exc: ValidationError) -> list[ConfigError]:
    out: list[ConfigError] = []
    seen = set()
    for e in exc.errors():
        path = _loc(tuple(e.get("loc", ())))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown key"
        key = (path, msg)
        if key in seen:
            continue
        seen.add(key)
        out.append(ConfigError(path, msg))
    return out


def _semantic_errors(cfg: RouterConfig) -> list[ConfigError]:
    errs: list[ConfigError] = []
    routes = cfg.routes
    buckets = cfg.buckets

    def add(path: str, msg: str) -> None:
        errs.append(ConfigError(path, msg))

    if not routes:
        add("routes", "at least one route is required")
    if UNKNOWN_BUCKET not in buckets:
        add("buckets", f"a bucket named '{UNKNOWN_BUCKET}' is required (where unmatched requests go)")

    for bname, b in buckets.items():
        if b.route not in routes:
            add(f"buckets.{bname}.route", f"unknown route '{b.route}'")
        seen_kw = set()
        for i, k in enumerate(b.keywords):
            if k in seen_kw:
                add(f"buckets.{bname}.keywords[{i}]", f"duplicate keyword '{k}'")
            seen_kw.add(k)
    vb = buckets.get(VISION_BUCKET)
    if vb is not None and vb.route in routes and not routes[vb.route].vision:
        add(f"buckets.{VISION_BUCKET}.route", f"route '{vb.route}' has no vision: image requests need a route with vision: true")

    seen_tb = set()
    for i, name in enumerate(cfg.tie_break):
        if name not in buckets:
            add(f"tie_break[{i}]", f"unknown bucket '{name}'")
        if name in seen_tb:
            add(f"tie_break[{i}]", f"duplicate bucket '{name}'")
        seen_tb.add(name)

    for bname, proms in cfg.size_promotions.items():
        if bname not in buckets:
            add(f"size_promotions.{bname}", f"unknown bucket '{bname}'")
        last = -1
        for i, p in enumerate(proms):
            if p.route not in routes:
                add(f"size_promotions.{bname}[{i}].route", f"unknown route '{p.route}'")
            elif bname == VISION_BUCKET and not routes[p.route].vision:
                add(f"size_promotions.{bname}[{i}].route", f"route '{p.route}' has no vision (image requests promote here)")
            if p.over_tokens <= last:
                add(f"size_promotions.{bname}[{i}].over_tokens", "thresholds must be strictly increasing")
            last = p.over_tokens

    if cfg.embeddings is not None and cfg.embeddings.route not in routes:
        add("embeddings.route", f"unknown route '{cfg.embeddings.route}'")

    # aliases: unique across routes, not clashing with route names or homelab/auto
    owner: dict[str, str] = {}
    for rname, r in routes.items():
        for i, a in enumerate(r.aliases):
            p = f"routes.{rname}.aliases[{i}]"
            if a == AUTO_MODEL:
                add(p, f"'{AUTO_MODEL}' is reserved for the classifier")
            elif a in routes and a != rname:
                add(p, f"alias '{a}' is the name of route '{a}'")
            elif a in owner:
                add(p, f"duplicate alias '{a}' (also on route '{owner[a]}')")
            else:
                owner[a] = rname

    # spill/failover graph
    for rname, r in routes.items():
        base = f"routes.{rname}"
        targets: list[tuple[str, str]] = []
        if isinstance(r.spill, str):
            targets.append((f"{base}.spill", r.spill))
        elif isinstance(r.spill, SpillTargets):
            if r.spill.text:
                targets.append((f"{base}.spill.text", r.spill.text))
            if r.spill.image:
                targets.append((f"{base}.spill.image", r.spill.image))
        if r.failover:
            targets.append((f"{base}.failover", r.failover))
        for p, t in targets:
            if t not in routes:
                add(p, f"unknown route '{t}'")
            elif t == rname:
                add(p, "a route cannot spill or fail over to itself")
        if r.terminal and (r.failover or r.spill):
            add(base, "a terminal route has no spill or failover (it answers 503 instead)")
        if not r.terminal and not r.failover:
            add(f"{base}.failover", "required unless the route is terminal: true (every chain must end at a terminal route)")
        if r.vision:
            for kind in ("spill", "failover"):
                t = r.spill_target(True) if kind == "spill" else r.failover
                if t and t in routes and not routes[t].vision:
                    where = f"{base}.failover" if kind == "failover" else (
                        f"{base}.spill.image" if isinstance(r.spill, SpillTargets) and r.spill.image else f"{base}.spill")
                    add(where, f"image traffic would reach '{t}', which has no vision "
                               f"(use spill: {{text: ..., image: <vision route>}} / a vision failover)")

    for rname in cfg.prices:
        if rname not in routes:
            add(f"prices.{rname}", f"unknown route '{rname}'")
    if cfg.structured.escalate_to and cfg.structured.escalate_to not in routes:
        add("structured.escalate_to", f"unknown route '{cfg.structured.escalate_to}'")
    for i, b in enumerate(cfg.structured.fail_closed_buckets):
        if b not in buckets and "fail_closed_buckets" in cfg.structured.model_fields_set:   # not the default
            add(f"structured.fail_closed_buckets[{i}]", f"unknown bucket '{b}'")

    for p, m in cloud_privacy.config_errors(cfg):   # issue 18: when a request may leave the house
        add(p, m)
    for node, agent in cfg.hub.agents.items():
        for i, r in enumerate(agent.routes):
            if r not in routes:
                add(f"hub.agents.{node}.routes[{i}]", f"unknown route '{r}'")

    if not any(r.terminal for r in routes.values()) and routes:
        add("routes", "no terminal route: mark the bottom of the fallback chain with terminal: true")

    # cycles over spill + failover edges (per modality)
    if not errs:
        for has_image in (False, True):
            edges = {}
            for rname, r in routes.items():
                nxt = set()
                st = r.spill_target(has_image)
                if st:
                    nxt.add(st)
                if r.failover:
                    nxt.add(r.failover)
                edges[rname] = nxt
            cyc = find_cycle(edges)
            if cyc:
                add(f"routes.{cyc[0]}", "spill/failover cycle: " + " -> ".join(cyc))
                break
    return errs


def parse_dict(data: Any) -> tuple[Optional[RouterConfig], list[ConfigError]]:
    if not isinstance(data, dict):
        return None, [ConfigError("<root>", "the config must be a mapping")]
    try:
        cfg = RouterConfig.model_validate(data)
    except ValidationError as exc:
        return None, _schema_errors(exc)
    errs = _semantic_errors(cfg)
    return (cfg if not errs else None), errs


def validate_dict(data: dict) -> list[ConfigError]:
    """Schema + semantic validation; returns every error found (empty list: valid)."""
    return parse_dict(data)[1]


def load_config(path: str | os.PathLike) -> RouterConfig:
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigInvalid([ConfigError("<file>", f"cannot read {path}: {exc.strerror or exc}")]) from None
    try:
        data = load_yaml(raw)
    except ValueError as exc:      # (where, message) of the YAML syntax error
        raise ConfigInvalid([ConfigError(*exc.args)]) from None
    if data is None:
        data = {}
    cfg, errs = parse_dict(data)
    if errs:
        raise ConfigInvalid(errs)
    assert cfg is not None
    cfg.source_path = path
    return cfg
