"""Privacy by construction: when a request may leave the house (pure functions, no I/O).

Config rules (checked with the rest of the router config, router_app/decision/config.py):
  * a cloud route names its provider and the environment variable of its key, and speaks https (plain http only
    to a loopback address: a tunnel or a test double);
  * `provider:` and `cloud:` belong to cloud routes only;
  * no route spills or fails over to a cloud route, and structured outputs never escalate to one, unless that
    cloud route says `cloud.fallback_target: true`;
  * image/audio/file parts never go to a cloud route without `cloud.send_images: true`: a cloud route with
    `vision: true`, and a vision/camera/image bucket (or its size promotions) mapped to a cloud route, need it;
  * embeddings stay local.
Request rules (router_app/decision/policy.py):
  * a key with no whitelist (or no key at all) may use local routes only; a cloud route is used only for keys
    whose whitelist names it (`allowed_for_key`);
  * a cloud route is reached only when the request pins it (model name, X-Homelab-Route) or a bucket maps to it.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
IMAGE_BUCKET_WORDS = ("vision", "camera", "image", "photo", "cctv", "frigate")


def is_cloud(route: Any) -> bool:
    return getattr(route, "kind", "local") == "cloud"


def cloud_routes(routes: dict) -> frozenset:
    return frozenset(n for n, r in routes.items() if is_cloud(r))


def sends_images(route: Any) -> bool:
    opts = getattr(route, "cloud", None)
    return bool(opts is not None and opts.send_images)


def fallback_ok(route: Any) -> bool:
    opts = getattr(route, "cloud", None)
    return bool(opts is not None and opts.fallback_target)


def is_image_bucket(name: str) -> bool:
    n = name.lower()
    return any(w in n for w in IMAGE_BUCKET_WORDS)


def allowed_for_key(routes: dict, allowed: Optional[frozenset]) -> Optional[frozenset]:
    """The routes a caller may use: a key without a whitelist (None) gets the local routes only, when any route is
    a cloud route; otherwise the whitelist as it is."""
    if allowed is not None:
        return allowed
    clouds = cloud_routes(routes)
    if not clouds:
        return None
    return frozenset(n for n in routes if n not in clouds)


def _route_errors(name: str, r: Any) -> list[tuple[str, str]]:
    base = f"routes.{name}"
    out: list[tuple[str, str]] = []
    if not is_cloud(r):
        if getattr(r, "provider", None):
            out.append((f"{base}.provider", "only a route with kind: cloud has a provider"))
        if getattr(r, "cloud", None) is not None:
            out.append((f"{base}.cloud", "only a route with kind: cloud has cloud options"))
        return out
    if not getattr(r, "provider", None):
        out.append((f"{base}.provider", "a cloud route needs a provider: openai, anthropic or openai_compatible"))
    if not getattr(r, "api_key_env", None):
        out.append((f"{base}.api_key_env", "a cloud route needs api_key_env (the variable holding its key, from "
                                           "Vault into the router's environment file)"))
    parts = urlsplit(r.url)
    if parts.scheme != "https" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        out.append((f"{base}.url", "a cloud route must use https (plain http only to a loopback address)"))
    if r.vision and not sends_images(r):
        out.append((f"{base}.vision", "vision: true on a cloud route sends images out of the house: "
                                      "set cloud.send_images: true to mean it"))
    if getattr(r, "embeddings", False):
        out.append((f"{base}.embeddings", "embeddings stay local: a cloud route cannot serve /v1/embeddings"))
    return out


def _targets(name: str, r: Any) -> Iterable[tuple[str, str]]:
    base = f"routes.{name}"
    s = r.spill
    if isinstance(s, str):
        yield f"{base}.spill", s
    elif s is not None:
        if s.text:
            yield f"{base}.spill.text", s.text
        if s.image:
            yield f"{base}.spill.image", s.image
    if r.failover:
        yield f"{base}.failover", r.failover


def config_errors(cfg: Any) -> list[tuple[str, str]]:
    """(path, message) for every cloud rule the config breaks (see the module docstring)."""
    routes = cfg.routes
    out: list[tuple[str, str]] = []
    for name, r in routes.items():
        out.extend(_route_errors(name, r))
    out.extend(_site_errors(cfg))
    clouds = cloud_routes(routes)
    if not clouds:
        return out
    for name, r in routes.items():
        for path, t in _targets(name, r):
            if t in clouds and not fallback_ok(routes[t]):
                out.append((path, f"'{t}' is a cloud route: it is never a spill or failover target unless it says "
                                  "cloud.fallback_target: true"))
    esc = cfg.structured.escalate_to
    if esc in clouds and not fallback_ok(routes[esc]):
        out.append(("structured.escalate_to", f"'{esc}' is a cloud route: structured outputs escalate there only if "
                                              "it says cloud.fallback_target: true"))
    if cfg.embeddings is not None and cfg.embeddings.route in clouds:
        out.append(("embeddings.route", f"'{cfg.embeddings.route}' is a cloud route: embeddings stay local"))
    for bname, b in cfg.buckets.items():
        if not is_image_bucket(bname):
            continue
        if b.route in clouds and not sends_images(routes[b.route]):
            out.append((f"buckets.{bname}.route", f"bucket '{bname}' carries images and '{b.route}' is a cloud "
                                                  "route: set cloud.send_images: true on it to send them out"))
        for i, p in enumerate(cfg.size_promotions.get(bname, ())):
            if p.route in clouds and not sends_images(routes[p.route]):
                out.append((f"size_promotions.{bname}[{i}].route",
                            f"bucket '{bname}' carries images and '{p.route}' is a cloud route without "
                            "cloud.send_images: true"))
    return out


def _site_errors(cfg: Any) -> list[tuple[str, str]]:
    """The top-level `cloud:` key (router_app/cloud/settings.py: CloudSite), and a price for every cloud route."""
    from pydantic import ValidationError   # noqa: PLC0415 - load time only

    from .prices import reference_price, route_price   # noqa: PLC0415
    from .settings import CloudSite   # noqa: PLC0415
    out: list[tuple[str, str]] = []
    raw = cfg.extra("cloud") if hasattr(cfg, "extra") else None
    try:
        site = CloudSite.model_validate(raw or {})
    except ValidationError as exc:
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            msg = "unknown key" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
            out.append(("cloud." + loc if loc else "cloud", msg))
        return out
    if site.compare_to and reference_price(cfg, site.compare_to) is None:
        out.append(("cloud.compare_to", f"'{site.compare_to}' is neither a priced cloud route nor a provider/model "
                                        "of the price table (router_app/cloud/prices.py)"))
    for name, r in cfg.routes.items():
        if is_cloud(r) and r.provider in ("openai", "anthropic") and route_price(cfg, name) is None:
            out.append((f"routes.{name}.model", f"no price for '{r.model}' in the price table: add prices.{name}"))
    return out


def leave_reason(reason: str, pin: Optional[str], bucket: str) -> str:
    """Why a decision ends on a cloud route, in words (for explain and the decision log)."""
    if reason == "header_pin":
        return "the X-Homelab-Route header pins it"
    if reason == "model_pin" and pin == "route":
        return "the request names it as its model"
    if pin == "bucket":
        return f"bucket '{bucket}' is pinned by the request and mapped to it"
    return f"bucket '{bucket}' is mapped to it ({reason})"
