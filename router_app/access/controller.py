"""The real AccessControl: per-app keys, route whitelists, rpm limits, token
budgets (reserve, then settle), the usage ledger, the audit log and per-app
metrics. See router_app/access/protocol.py for the seam with the core and
router_app/README-access.md for the user-facing semantics.

Hot path (event loop): key check = dict lookup by key id + one salted SHA-256
+ constant-time compare; rate and budget checks are in-memory. SQLite writes
and audit lines go to the LedgerWriter thread (group commit).
"""
from __future__ import annotations

import asyncio
import calendar
import itertools
import os
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Optional


from .config import AccessSettings, resolve_store_path, settings_from
from .audit import AuditMixin, RotatingJsonl
from .ledger import LedgerWriter
from .protocol import ApiError, Principal
from .ratelimit import RateLimiter, retry_after_header
from .records import Ticket, _AppState, _iso, _Metrics, _prompt_text, _tokens
from .report import ReportMixin
from .store import KeyRecord, Store, UsageRow, split_token, utc_day, utc_month

AUTO_MODEL = "homelab/auto"


def _next_day(ts: float) -> float:
    return (int(ts // 86400) + 1) * 86400.0


def _next_month(ts: float) -> float:
    t = time.gmtime(ts)
    y, m = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((y, m, 1, 0, 0, 0, 0, 0, 0)))


def resolve_models(models: Iterable[str], cfg: Any) -> tuple[set[str], list[str]]:
    """Model names a key may call -> the routes they reach (under ``cfg``).

    A route name, an alias, a route's upstream model id -> that route;
    ``homelab/<bucket>`` -> the bucket's route and its size-promotion routes;
    ``homelab/auto`` -> every route. Returns (routes, unknown names)."""
    routes_cfg = getattr(cfg, "routes", {}) or {}
    buckets = getattr(cfg, "buckets", {}) or {}
    promos = getattr(cfg, "size_promotions", {}) or {}
    by_alias: dict[str, str] = {}
    for rname, r in routes_cfg.items():
        by_alias[rname] = rname
        by_alias.setdefault(getattr(r, "model", None) or rname, rname)
        for a in getattr(r, "aliases", []) or []:
            by_alias[a] = rname
    out: set[str] = set()
    unknown: list[str] = []
    for m in models:
        if m == AUTO_MODEL:   # every local route: a cloud route is whitelisted by name only (issue 18)
            out.update(n for n, r in routes_cfg.items() if getattr(r, "kind", "local") != "cloud")
        elif m in by_alias:
            out.add(by_alias[m])
        elif m.startswith("homelab/") and m[len("homelab/"):] in buckets:
            b = m[len("homelab/"):]
            out.add(buckets[b].route)
            for p in promos.get(b, []) or []:
                out.add(p.route)
        else:
            unknown.append(m)
    return out, unknown


def allowed_for(rec: KeyRecord, cfg: Any) -> Optional[frozenset]:
    if rec.routes is None and rec.models is None:
        return None
    allowed: set[str] = set(rec.routes or ())
    if rec.models:
        allowed |= resolve_models(rec.models, cfg)[0]
    return frozenset(allowed)


class AccessController(ReportMixin, AuditMixin):
    """Implements router_app.access_protocol.AccessControl."""

    def __init__(self, settings: AccessSettings, store: Store, cfg: Any = None, *,
                 log_dir: Optional[str] = None, clock: Callable[[], float] = time.time,
                 start_writer: bool = True, poll_s: float = 0.5):
        self.settings = settings
        self.store = store
        self.cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = RateLimiter()
        self._metrics = _Metrics()
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:12]
        self._log_dir = log_dir
        self._audit: Optional[RotatingJsonl] = None
        self._structured_log: Optional[RotatingJsonl] = None
        if log_dir:
            self._audit = RotatingJsonl(os.path.join(log_dir, "audit.jsonl"),
                                        settings.audit_log.max_bytes, settings.audit_log.keep)
            self._structured_log = RotatingJsonl(
                os.path.join(log_dir, "structured-validation.jsonl"),
                settings.audit_log.max_bytes, settings.audit_log.keep)
        # one immutable snapshot, swapped with a single assignment: a reader never sees
        # new keys with old whitelists (kid -> (record, allowed routes))
        self._snap: tuple[dict[str, tuple[KeyRecord, Optional[frozenset]]], dict[str, KeyRecord]] = ({}, {})
        self._any_key = False
        self._apps: dict[str, _AppState] = {}
        self._inflight_total = 0
        self._day_end = 0.0
        self._month_end = 0.0
        self._reload_keys()
        self._load_spent()
        self.writer = LedgerWriter(store, audit_sink=self._audit.write_lines if self._audit else None,
                                   on_external_change=self._reload_keys, poll_s=poll_s,
                                   keep_days=settings.ledger_keep_days, clock=clock)
        if start_writer:
            self.writer.start()

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any, **kw: Any) -> "AccessController":
        s = settings_from(cfg)
        # auth: off never reads keys and records no usage: keep the store in memory, touch no file
        store = Store(":memory:" if s.auth == "off" else resolve_store_path(s, cfg))
        log_dir = kw.pop("log_dir", None) or getattr(cfg, "log_dir", None)
        if log_dir and not os.path.isabs(log_dir):
            log_dir = os.path.abspath(log_dir)
        return cls(s, store, cfg, log_dir=log_dir, **kw)

    def update_config(self, cfg: Any) -> None:
        """Called after a config reload: re-resolve model whitelists and take
        the new prices / structured policy (auth mode and store path need a
        restart)."""
        s = settings_from(cfg)
        self.cfg = cfg
        self.settings = self.settings.model_copy(update={
            "prices": s.prices, "structured": s.structured, "log_prompts": s.log_prompts,
            "default_reserve_tokens": s.default_reserve_tokens})
        active, revoked = self._snap
        self._snap = ({kid: (r, allowed_for(r, cfg)) for kid, (r, _) in active.items()}, revoked)

    def close(self) -> None:
        self.writer.stop()
        if self._audit:
            self._audit.close()
        if self._structured_log:
            self._structured_log.close()
        self.store.close()

    def _reload_keys(self) -> None:
        recs = self.store.list_keys(include_revoked=True)
        active = {r.kid: r for r in recs if r.active}
        revoked = {r.kid: r for r in recs if not r.active}
        self._snap = ({kid: (r, allowed_for(r, self.cfg)) for kid, r in active.items()}, revoked)
        self._any_key = bool(recs)

    @property
    def _keys(self) -> dict[str, KeyRecord]:
        return {kid: r for kid, (r, _) in self._snap[0].items()}

    def _load_spent(self) -> None:
        now = self._clock()
        day, month = utc_day(now), utc_month(now)
        self._day_end, self._month_end = _next_day(now), _next_month(now)
        for app, (d, m) in self.store.spent(now).items():
            self._apps[app] = _AppState(day, month, d, m)

    # -- policy ---------------------------------------------------------------
    @property
    def enforced(self) -> bool:
        mode = self.settings.auth
        return mode == "required" or (mode == "auto" and self._any_key)

    def authenticate(self, authorization: Optional[str], client_host: str = "") -> Optional[Principal]:
        if not self.enforced:
            return None
        if not authorization:
            raise self._unauthorized("Missing API key: send 'Authorization: Bearer <key>' "
                                     "(create one with 'homelab-router keys create').", "missing_api_key")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._unauthorized("Malformed Authorization header: expected 'Bearer <key>'.",
                                     "invalid_api_key")
        parts = split_token(token)
        if parts is not None:
            kid = parts[0]
            active, revoked = self._snap
            ent = active.get(kid)
            if ent is not None and ent[0].verify(token):
                return Principal(ent[0].app, ent[1], {"kid": kid})
            old = revoked.get(kid)
            if old is not None and old.verify(token):
                raise self._unauthorized(f"API key for app '{old.app}' has been revoked.", "revoked_api_key")
        raise self._unauthorized("Incorrect API key provided.", "invalid_api_key")

    def _unauthorized(self, msg: str, code: str) -> ApiError:
        with self._lock:
            self._metrics.unauthorized += 1
        return ApiError(401, msg, "invalid_request_error", code,
                        headers={"WWW-Authenticate": 'Bearer realm="homelab-router"'})

    def allowed_routes(self, principal: Optional[Principal]) -> Optional[frozenset]:
        if principal is None:
            return None
        return principal.allowed_routes

    def check_pin(self, principal: Optional[Principal], route: str) -> None:
        if principal is None or principal.allowed_routes is None or route in principal.allowed_routes:
            return
        allowed = ", ".join(sorted(principal.allowed_routes)) or "none"
        raise ApiError(403, f"The key for app '{principal.app}' may not use route '{route}' "
                            f"(allowed routes: {allowed}).", "permission_error", "route_forbidden")

    def _roll(self, now: float) -> None:
        if now >= self._day_end:
            day, month = utc_day(now), utc_month(now)
            new_month = now >= self._month_end
            for st in self._apps.values():
                st.day, st.spent_day = day, 0
                if new_month:
                    st.month, st.spent_month = month, 0
            self._day_end = _next_day(now)
            if new_month:
                self._month_end = _next_month(now)

    def _state(self, app: str, now: float) -> _AppState:
        st = self._apps.get(app)
        if st is None:
            st = self._apps[app] = _AppState(utc_day(now), utc_month(now))
        return st

    def admit(self, principal: Optional[Principal], route: str, est_tokens: int, *,
              max_tokens: Optional[int] = None, request_id: Optional[str] = None,
              body: Any = None, end_user: Optional[str] = None) -> Optional[Ticket]:
        """Rate check, then budget reservation (estimated prompt tokens +
        max_tokens, or ``default_reserve_tokens``). Raises ApiError(429)."""
        if principal is None:
            return None
        kid = principal.extra.get("kid") if principal.extra else None
        active, revoked = self._snap
        ent = active.get(kid) if kid else None
        rec = ent[0] if ent is not None else None
        if rec is None:
            rec = revoked.get(kid) if kid else None
            if rec is not None:  # revoked between authenticate and admit
                raise self._unauthorized(f"API key for app '{principal.app}' has been revoked.",
                                         "revoked_api_key")
        app = principal.app
        est = max(0, int(est_tokens or 0))
        if max_tokens is None and isinstance(body, dict):
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        mt = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        need = est + (mt if mt is not None else self.settings.default_reserve_tokens)
        now = self._clock()
        err: Optional[ApiError] = None
        with self._lock:
            self._roll(now)
            st = self._state(app, now)
            rpm = rec.rpm if rec else None
            wait = self._rate.check(app, rpm)
            if wait is not None:
                self._metrics.rate_limited[app] = self._metrics.rate_limited.get(app, 0) + 1
                ra = retry_after_header(wait)
                err = ApiError(429, f"Rate limit reached for app '{app}': {rpm} requests per minute. "
                                    f"Retry after {ra} s.", "rate_limit_exceeded", "rate_limit_exceeded",
                               headers={"Retry-After": ra, "x-ratelimit-limit-requests": str(rpm),
                                        "x-ratelimit-remaining-requests": "0"})
            else:
                for period, limit, spent, reset in (
                        ("day", rec.tokens_per_day if rec else None, st.spent_day, self._day_end),
                        ("month", rec.tokens_per_month if rec else None, st.spent_month, self._month_end)):
                    if not limit:
                        continue
                    fits = spent + st.reserved + need <= limit
                    # a lone request may start while budget is left even if its
                    # reservation is larger: overshoot is bounded by that one request
                    lone = st.reserved == 0 and spent < limit
                    if fits or lone:
                        continue
                    self._rate.undo(app)
                    self._metrics.budget_refused[app] = self._metrics.budget_refused.get(app, 0) + 1
                    if spent >= limit:
                        ra = retry_after_header(reset - now)
                        msg = (f"Token budget exhausted for app '{app}': the per-{period} budget of "
                               f"{limit} tokens is used up ({spent} used); it resets at {_iso(reset)}.")
                    else:
                        ra = "1"
                        msg = (f"Token budget for app '{app}' is committed: the per-{period} budget of "
                               f"{limit} tokens has {spent} used and {st.reserved} reserved by requests "
                               f"in flight; this request needs up to {need} (prompt estimate + max_tokens). "
                               f"Retry when they finish; the budget resets at {_iso(reset)}.")
                    err = ApiError(429, msg, "insufficient_quota", f"budget_exceeded_{period}",
                                   headers={"Retry-After": ra, "x-homelab-budget": period,
                                            "x-homelab-budget-reset": _iso(reset)})
                    break
            if err is None:
                st.reserved += need
                st.inflight += 1
                self._inflight_total += 1
        if err is not None:
            raise err
        lid = f"{self._id_prefix}-{next(self._ids)}"
        prompt = _prompt_text(body) if (self.settings.log_prompts and body is not None) else None
        return Ticket(lid, request_id or lid, app, kid, route, need, est, now, prompt, end_user=end_user)

    def settle(self, ticket: Optional[Ticket], usage: Optional[dict], *, route: str, bucket: str,
               status: int, latency_ms: float, estimated: bool = False) -> Optional["asyncio.Future"]:
        """Replace the reservation by the real usage and record the call.

        Returns a future (when called on an event loop) that completes once the
        ledger row is committed; awaiting it before finishing the response makes
        every answered request durable. Ignoring it is safe too."""
        if ticket is None or ticket.settled:
            return None
        ticket.settled = True
        pt, ct, tt, est_flag = _tokens(usage)
        estimated = estimated or est_flag
        if tt is None:
            # the engine sent no usage: count the prompt estimate for answered calls
            # (and for a client that went away: the engine has already read the prompt)
            pt, ct, tt, estimated = ((ticket.est_prompt, 0, ticket.est_prompt, True)
                                     if status < 400 or status == 499 else (0, 0, 0, False))
        now = self._clock()
        with self._lock:
            self._roll(now)
            st = self._state(ticket.app, now)
            st.reserved -= ticket.reserved
            st.inflight -= 1
            self._inflight_total -= 1
            alone = self._inflight_total == 0
            st.spent_day += tt
            st.spent_month += tt
            k = (ticket.app, route)
            m = self._metrics
            m.calls[k] = m.calls.get(k, 0) + 1
            m.prompt[k] = m.prompt.get(k, 0) + pt
            m.completion[k] = m.completion.get(k, 0) + ct
            if status >= 400:
                m.errors[k] = m.errors.get(k, 0) + 1
        row = UsageRow(ticket.ledger_id, now, ticket.app, ticket.kid, route, bucket, pt, ct, tt,
                       estimated, status, round(latency_ms, 3), ticket.request_id, ticket.end_user)
        audit = self._audit_line(now, ticket.request_id, ticket.app, route, bucket, status,
                                 latency_ms, pt, ct, tt, estimated, ticket.prompt)
        if alone and self.writer.try_inline(row, audit):
            return None   # committed already: the only request in flight
        return self._submit(row, audit)

    def release(self, ticket: Optional[Ticket]) -> None:
        """Always called (finally). A ticket never settled (client went away,
        internal error) gives its reservation back and is recorded with status
        499 and the prompt estimate."""
        if ticket is None or ticket.settled:
            return
        est = {"prompt_tokens": ticket.est_prompt, "completion_tokens": 0,
               "total_tokens": ticket.est_prompt}
        self.settle(ticket, est, route=ticket.route, bucket="", status=499,
                    latency_ms=(self._clock() - ticket.t0) * 1000.0, estimated=True)

    def _submit(self, row: Optional[UsageRow], audit: Optional[bytes]) -> Optional["asyncio.Future"]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not self.writer.alive:
            if not self.writer.alive and row is not None:   # writer gone (shutdown): commit here
                try:
                    self.store.insert_usage([row])
                except Exception:
                    pass
                return None
            self.writer.submit(row, audit)
            return None
        fut = loop.create_future()
        self.writer.submit(row, audit, None, loop, fut)
        return fut

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is committed (tests, shutdown)."""
        ev = threading.Event()
        self.writer.submit(None, None, ev.set)
        return ev.wait(timeout)


def build(cfg: Any) -> AccessController:
    """Entry point used by the core (router_app.v1.app.build_access)."""
    return AccessController.from_config(cfg)


