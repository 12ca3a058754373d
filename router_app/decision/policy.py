"""Routing policy: pure functions from (request, policy, state) to a Decision.

Nothing here does I/O. `homelab-router explain` and the live request path call the same `decide()`.

Rules (strongest first):
  1. X-Homelab-Route header (a route name or alias)     -> route pin   (reason header_pin)
     X-Homelab-Bucket header (a bucket name)              -> bucket pin  (reason header_pin)
  2. model: an alias, a route name or a route's model id  -> route pin   (reason model_pin)
     model: homelab/<bucket> (not an alias)               -> bucket pin  (reason model_pin)
  3. metadata.homelab_bucket in the body                  -> bucket pin  (reason metadata_hint)
  4. homelab/auto, no model                               -> keyword classifier (bucket_match / no_match)
     any other model name: 404 model_not_found, or the classifier when route_unknown_models is true
An image part sends every non-route-pinned request to the `vision` bucket (reason image_present).
Size promotion applies to buckets only (never to route pins), when the estimate is strictly greater than over_tokens.
Cloud routes (issue 18, router_app/cloud/privacy.py): used only for keys whose whitelist names them, when pinned or
when a bucket maps to them; a key with no whitelist may use local routes only.
Drained routes and routes the caller may not use are skipped for non-pinned traffic by following the failover chain;
auto-routed traffic whose route the key may not use goes to the best route it may use (router_app/decision/keyscope.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..cloud.privacy import allowed_for_key, leave_reason
from ..errors import ApiError
from .classifier import Classifier
from .config import AUTO_MODEL, BUCKET_PREFIX, VISION_BUCKET, RouterConfig
from .keyscope import reroute

# Parts only a `vision` route may receive. Audio and file parts go the same way: a text-only engine cannot read them.
IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image", "input_audio", "audio", "audio_url", "file",
                              "input_file", "video_url"})
TEXT_ROLES = frozenset({"system", "user", "developer"})


# --------------------------------------------------------------------------------------------- request view

@dataclass(slots=True)
class RequestView:
    """What the policy needs to know about one request (built once, cheaply, from the parsed body)."""
    model: Optional[str] = None
    route_header: Optional[str] = None
    bucket_header: Optional[str] = None
    metadata_bucket: Optional[str] = None
    text: str = ""            # system + user text, the classifier's input
    total_chars: int = 0      # every text part of the prompt, for the token estimate
    has_image: bool = False

    @property
    def est_tokens(self) -> int:
        return estimate_tokens(self.total_chars)


def estimate_tokens(chars: int) -> int:
    """The documented fast estimate: ceil(characters / 4) over all text parts."""
    return (chars + 3) // 4


def _content_text(content, parts_out: list, flags: list) -> int:
    """Appends the text of one message's content to parts_out; returns its length; flags[0]=True on an image."""
    if isinstance(content, str):
        parts_out.append(content)
        return len(content)
    n = 0
    if isinstance(content, list):
        for p in content:
            if isinstance(p, dict):
                t = p.get("type")
                if t == "text":
                    s = p.get("text")
                    if isinstance(s, str):
                        parts_out.append(s)
                        n += len(s)
                elif t in IMAGE_PART_TYPES:
                    flags[0] = True
            elif isinstance(p, str):
                parts_out.append(p)
                n += len(p)
    return n


def view_from_chat(body: dict, route_header=None, bucket_header=None) -> RequestView:
    msgs = body.get("messages")
    cls_parts: list = []
    other: list = []
    flags = [False]
    total = 0
    if isinstance(msgs, list):
        for m in msgs:
            if not isinstance(m, dict):
                continue
            if m.get("role") in TEXT_ROLES:
                total += _content_text(m.get("content"), cls_parts, flags)
            else:
                total += _content_text(m.get("content"), other, flags)
    return _finish(body, cls_parts, total, flags[0], route_header, bucket_header)


def view_from_completion(body: dict, route_header=None, bucket_header=None) -> RequestView:
    prompt = body.get("prompt")
    parts: list = []
    total = 0
    if isinstance(prompt, str):
        parts.append(prompt)
        total = len(prompt)
    elif isinstance(prompt, list):
        for p in prompt:
            if isinstance(p, str):
                parts.append(p)
                total += len(p)
    return _finish(body, parts, total, False, route_header, bucket_header)


def _finish(body, parts, total, has_image, route_header, bucket_header) -> RequestView:
    md = body.get("metadata")
    mb = md.get("homelab_bucket") if isinstance(md, dict) else None
    model = body.get("model")
    return RequestView(
        model=model if isinstance(model, str) else None,
        route_header=route_header or None,
        bucket_header=bucket_header or None,
        metadata_bucket=mb if isinstance(mb, str) and mb else None,
        text="\n".join(parts),
        total_chars=total,
        has_image=has_image,
    )


# --------------------------------------------------------------------------------------------- compiled policy

class Policy:
    """A compiled, immutable view of a RouterConfig used for decisions (rebuilt on reload)."""

    def __init__(self, cfg: RouterConfig):
        self.cfg = cfg
        self.routes = cfg.routes
        self.route_names = tuple(cfg.routes)
        self.buckets = {n: b.route for n, b in cfg.buckets.items()}
        self.vision = {n: r.vision for n, r in cfg.routes.items()}
        self.terminal = {n: r.terminal for n, r in cfg.routes.items()}
        self.failover = {n: r.failover for n, r in cfg.routes.items()}
        self.spill = {(n, img): r.spill_target(img) for n, r in cfg.routes.items() for img in (False, True)}
        self.aliases: dict[str, str] = {}
        for n, r in cfg.routes.items():
            for a in r.aliases:
                self.aliases[a] = n
        self.model_ids: dict[str, str] = {}
        for n, r in cfg.routes.items():
            self.model_ids.setdefault(r.model, n)
        rank = {b: i for i, b in enumerate(cfg.tie_break)}
        for i, b in enumerate(cfg.buckets):
            rank.setdefault(b, len(cfg.tie_break) + i)
        self.rank = rank
        self.classifier = Classifier({n: b.keywords for n, b in cfg.buckets.items()}, rank)
        self.promotions = {b: sorted(((p.over_tokens, p.route) for p in ps), reverse=True)
                           for b, ps in cfg.size_promotions.items()}
        self.vision_routes = tuple(n for n in self.route_names if self.vision[n])
        self.embeddings_route = cfg.embeddings.route if cfg.embeddings else None
        self.route_unknown_models = cfg.route_unknown_models   # false: unknown model names are a 404
        self.cloud = {n: (r.provider or "cloud") for n, r in cfg.routes.items() if r.kind == "cloud"}

    def resolve_route_name(self, name: str) -> Optional[str]:
        if name in self.routes:
            return name
        return self.aliases.get(name)

    def failover_chain(self, route: str, has_image: bool = False) -> list[str]:
        chain, seen, cur = [], {route}, self.failover.get(route)
        while cur and cur not in seen:
            if not has_image or self.vision.get(cur):
                chain.append(cur)
            seen.add(cur)
            cur = self.failover.get(cur)
        return chain


# --------------------------------------------------------------------------------------------- decision

@dataclass(slots=True)
class Decision:
    bucket: str
    route: str
    reason: str
    pin: Optional[str]                 # "route", "bucket" or None (classifier)
    has_image: bool
    est_tokens: int
    matched: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    path: list = field(default_factory=list)        # routes skipped at decision time (drained / forbidden)
    fallback: list = field(default_factory=list)    # failover chain after `route` (has_image honoured)
    spill: Optional[str] = None                     # where `route` spills when saturated
    cloud: dict = field(default_factory=dict)       # issue 18: cloud routes on this path -> provider, and "why"

    @property
    def route_pinned(self) -> bool:
        return self.pin == "route"

    @property
    def keywords(self) -> list:
        out = []
        for v in self.matched.values():
            out.extend(v)
        return sorted(set(out))

    def to_dict(self) -> dict:
        return {
            "bucket": self.bucket, "route": self.route, "reason": self.reason, "pin": self.pin,
            "has_image": self.has_image, "est_tokens": self.est_tokens, "matched": self.matched,
            "scores": self.scores, "skipped": self.path, "spill": self.spill,
            "fallback": self.fallback + ["503"], "cloud": self.cloud,
        }


def unknown_model(model: str) -> ApiError:
    """OpenAI's answer for a model it does not serve (opt out: route_unknown_models: true)."""
    return ApiError(404, f"The model `{model}` does not exist", code="model_not_found", param="model")


def _no_vision_error(policy: Policy, route: str) -> ApiError:
    if route in policy.cloud:
        return ApiError(400, f"the request carries an image, audio or file part and route '{route}' is a cloud route "
                             "without cloud.send_images: true: it stays in the house", code="image_to_cloud_refused")
    can = ", ".join(policy.vision_routes) or "none"
    return ApiError(400, f"the request carries an image, audio or file part but route '{route}' cannot read them; "
                         f"routes with vision: {can}", code="image_to_blind_route")


def decide(policy: Policy, view: RequestView, drained: Iterable[str] = frozenset(),
           allowed_routes: Optional[frozenset] = None) -> Decision:
    """The routing decision. Same request + same state -> same decision. Raises ApiError (400/403/503)."""
    has_image = view.has_image
    est = view.est_tokens
    allowed_routes = allowed_for_key(policy.routes, allowed_routes)   # no whitelist: local routes only

    # 1-2. route pins
    pinned_route = None
    reason = None
    if view.route_header:
        pinned_route = policy.resolve_route_name(view.route_header)
        if pinned_route is None:
            raise ApiError(400, f"unknown route '{view.route_header}' in X-Homelab-Route; routes: "
                                + ", ".join(policy.route_names), code="unknown_route", param="x-homelab-route")
        reason = "header_pin"
    bucket = None
    if pinned_route is None and view.bucket_header:
        if view.bucket_header not in policy.buckets:
            raise ApiError(400, f"unknown bucket '{view.bucket_header}' in X-Homelab-Bucket; buckets: "
                                + ", ".join(policy.buckets), code="unknown_bucket", param="x-homelab-bucket")
        bucket, reason = view.bucket_header, "header_pin"
    model = view.model
    if pinned_route is None and bucket is None and model and model != AUTO_MODEL:
        r = policy.aliases.get(model)
        if r is None and model in policy.routes:
            r = model
        if r is None:
            r = policy.model_ids.get(model)
        if r is not None:
            pinned_route, reason = r, "model_pin"
        elif model.startswith(BUCKET_PREFIX) and model[len(BUCKET_PREFIX):] in policy.buckets:
            bucket, reason = model[len(BUCKET_PREFIX):], "model_pin"
        elif not policy.route_unknown_models:     # issue 11 item 6: unknown names are a 404 unless opted in
            raise unknown_model(model)

    if pinned_route is not None:
        if has_image and not policy.vision[pinned_route]:
            raise _no_vision_error(policy, pinned_route)
        if allowed_routes is not None and pinned_route not in allowed_routes:
            if pinned_route in policy.cloud:
                raise ApiError(403, f"route '{pinned_route}' is a cloud route: only keys whose whitelist names it "
                                    "may use it", type="permission_error", code="cloud_route_forbidden")
            raise ApiError(403, f"this key may not use route '{pinned_route}'", type="permission_error",
                           code="route_forbidden")
        return _with_cloud(policy, Decision(
            bucket="pinned", route=pinned_route, reason=reason, pin="route", has_image=has_image, est_tokens=est,
            fallback=policy.failover_chain(pinned_route, has_image), spill=policy.spill[(pinned_route, has_image)]))

    # 3. metadata hint
    if bucket is None and view.metadata_bucket:
        if view.metadata_bucket not in policy.buckets:
            raise ApiError(400, f"unknown bucket '{view.metadata_bucket}' in metadata.homelab_bucket; buckets: "
                                + ", ".join(policy.buckets), code="unknown_bucket", param="metadata.homelab_bucket")
        bucket, reason = view.metadata_bucket, "metadata_hint"
    pin = "bucket" if bucket is not None else None

    # 4. classifier (always run for the log; decides only when nothing is pinned)
    cls_bucket, matched, scores = policy.classifier.classify(view.text)
    if bucket is None:
        bucket = cls_bucket
        reason = "bucket_match" if scores else "no_match"
    if has_image and VISION_BUCKET in policy.buckets:
        bucket, reason = VISION_BUCKET, "image_present"

    route = policy.buckets[bucket]
    for over, target in policy.promotions.get(bucket, ()):
        if est > over:
            if has_image and not policy.vision[target]:
                continue
            if target != route:
                route, reason = target, "size_promotion"
            break

    path: list = []
    if has_image and not policy.vision[route]:
        chain = policy.failover_chain(route, True)
        if not chain:
            raise _no_vision_error(policy, route)
        path.append(route)
        route, reason = chain[0], "image_present"

    # issue 11 item 9: an auto-routed request goes to the best route the key may use (router_app/decision/keyscope.py)
    if pin is None and allowed_routes is not None and route not in allowed_routes:
        alt = reroute(policy, bucket, route, scores, has_image, est, allowed_routes, drained)
        if alt is not None:
            path.append(route)
            reason = f"{route}_forbidden"
            bucket, route = alt

    # skip drained and forbidden routes along the failover chain
    drained = drained or ()
    while route in drained or (allowed_routes is not None and route not in allowed_routes):
        why = "drained" if route in drained else "forbidden"
        nxt = policy.failover.get(route)
        while nxt is not None and has_image and not policy.vision[nxt]:
            nxt = policy.failover.get(nxt)
        if nxt is None or nxt in path or nxt == route:
            if why == "forbidden":
                raise ApiError(403, "this key may not use any route that can serve this request "
                                    f"(bucket '{bucket}')", type="permission_error", code="route_forbidden")
            err = ApiError(503, f"route '{route}' is drained and has no failover", type="server_error",
                           code="route_drained", headers={"Retry-After": "30"})
            err.route, err.reason = route, f"{route}_drained"  # type: ignore[attr-defined]
            err.hops = [{"route": r, "event": "drained"} for r in path + [route]]  # type: ignore[attr-defined]
            raise err
        path.append(route)
        reason = f"{route}_{why}"
        route = nxt

    return _with_cloud(policy, Decision(
        bucket=bucket, route=route, reason=reason, pin=pin, has_image=has_image, est_tokens=est, matched=matched,
        scores=scores, path=path, fallback=policy.failover_chain(route, has_image),
        spill=policy.spill[(route, has_image)]))


def _with_cloud(policy: Policy, d: Decision) -> Decision:
    """Notes every cloud route the decision may reach (its route, spill, fallbacks) and why (issue 18)."""
    if policy.cloud:
        for r in [d.route, d.spill] + d.fallback:
            if r in policy.cloud and r not in d.cloud:
                d.cloud[r] = policy.cloud[r]
        if d.route in policy.cloud:
            d.cloud["why"] = leave_reason(d.reason, d.pin, d.bucket)
    return d


def format_explain(d: Decision) -> str:
    lines = [f"bucket:   {d.bucket}" + (f"  ({d.pin} pin)" if d.pin else "")]
    if d.scores:
        sc = ", ".join(f"{b}={d.scores[b]} [{', '.join(d.matched[b])}]"
                       for b in sorted(d.scores, key=lambda b: (-d.scores[b], b)))
        lines.append(f"scores:   {sc}")
    else:
        lines.append("scores:   (no keyword matched)")
    lines.append(f"image:    {'yes' if d.has_image else 'no'}")
    lines.append(f"tokens:   ~{d.est_tokens} (chars/4)")
    lines.append(f"route:    {d.route}")
    lines.append(f"reason:   {d.reason}")
    if d.path:
        lines.append(f"skipped:  {', '.join(d.path)}")
    lines.append(f"if busy:  {d.spill or '503 (busy)'}")
    lines.append("if down:  " + " -> ".join([d.route] + d.fallback + ["503"]))
    lines.append("leaves the house: " + _cloud_line(d))
    return "\n".join(lines)


def _cloud_line(d: Decision) -> str:
    c = d.cloud
    if d.route in c:
        return f"YES, to '{d.route}' ({c[d.route]}) because {c.get('why')}"
    others = [r for r in c if r != "why"]
    if others:
        return "not now; only if '" + d.route + "' is busy or down it may go to " + \
            ", ".join(f"'{r}' ({c[r]})" for r in others)
    return "no (every route on this path is local)"
