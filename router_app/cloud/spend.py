"""Cloud spend per app and route, money budgets, and the "saved vs cloud" figure for local traffic.

* A call answered by a cloud route costs its tokens at the route's price (router_app/cloud/prices.py); the cost
  counts against the app's money budget (`cloud.budgets.<app>` or `cloud.budgets.default`, per UTC day/month).
* Before a cloud call, the worst case (prompt estimate + max_tokens, else default_reserve_tokens) is reserved;
  a call that would pass the budget is refused 429 insufficient_quota (code budget_exceeded_usd_<period>), except
  a lone call while money is left (overshoot bounded by one call), as the token budgets do.
* A call answered by a local route "saves" what it would have cost at `cloud.compare_to`.
* Spent money survives a restart: the month's ledger rows (the access store) are priced again at start.
Exposed in /stats (`cloud`) and /metrics (homelab_cloud_spend_usd_total, homelab_cloud_saved_usd_total,
homelab_cloud_budget_remaining_usd).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from ..errors import ApiError
from .prices import cost, reference_price, route_price
from .settings import CloudSite


def _periods(now: float) -> tuple[str, str]:
    return time.strftime("%Y-%m-%d", time.gmtime(now)), time.strftime("%Y-%m", time.gmtime(now))


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class CloudSpend:
    def __init__(self, clock=time.time):
        self.clock = clock
        self.lock = threading.Lock()
        self.cfg = None
        self.site = CloudSite()
        self.spent: dict[tuple[str, str], float] = {}      # (app, route) -> USD, since start (+ month loaded)
        self.saved: dict[tuple[str, str], float] = {}      # (app, local route) -> USD at compare_to
        self.apps: dict[str, dict] = {}                    # app -> {day, month, usd_day, usd_month, reserved}

    # ------------------------------------------------------------------ config and restart
    def configure(self, cfg: Any) -> None:
        if cfg is self.cfg:
            return
        self.cfg = cfg
        self.site = CloudSite.model_validate(cfg.extra("cloud") or {})
        self.ref = reference_price(cfg, self.site.compare_to)

    def load(self, store: Any) -> None:
        """Prices the current month's ledger rows of cloud routes again (a restart keeps the spend)."""
        conn, lock = getattr(store, "conn", None), getattr(store, "_lock", None)
        if conn is None or lock is None or self.cfg is None:
            return
        day, month = _periods(self.clock())
        with lock:
            rows = conn.execute("SELECT app, route, day, SUM(prompt_tokens), SUM(completion_tokens) FROM usage "
                                "WHERE month=? GROUP BY app, route, day", (month,)).fetchall()
        for app, route, d, pt, ct in rows:
            r = self.cfg.routes.get(route or "")
            if r is None or r.kind != "cloud":
                continue
            usd = cost(route_price(self.cfg, route), pt or 0, ct or 0)
            st = self._app(app, self.clock())
            st["usd_month"] += usd
            if d == day:
                st["usd_day"] += usd
            self.spent[(app, route)] = self.spent.get((app, route), 0.0) + usd

    # ------------------------------------------------------------------ budgets
    def _app(self, app: str, now: float) -> dict:
        day, month = _periods(now)
        st = self.apps.get(app)
        if st is None:
            st = self.apps[app] = {"day": day, "month": month, "usd_day": 0.0, "usd_month": 0.0, "reserved": 0.0}
        if st["day"] != day:
            st["day"], st["usd_day"] = day, 0.0
        if st["month"] != month:
            st["month"], st["usd_month"] = month, 0.0
        return st

    def budget(self, app: str):
        b = self.site.budgets
        return b.get(app) or b.get("default")

    def admit(self, app: Optional[str], route: str, est_tokens: int, max_tokens: Optional[int],
              default_reserve: int) -> float:
        """Reserves the worst-case cost of a cloud call; returns it (0.0: nothing held). Raises ApiError 429."""
        if app is None or self.cfg is None or route not in self.cfg.routes or self.cfg.routes[route].kind != "cloud":
            return 0.0
        need = cost(route_price(self.cfg, route), est_tokens, max_tokens or default_reserve)
        b = self.budget(app)
        with self.lock:
            st = self._app(app, self.clock())
            for period, limit in (("day", b.usd_per_day if b else None), ("month", b.usd_per_month if b else None)):
                spent = st["usd_" + period]
                if limit is None or spent + st["reserved"] + need <= limit or (st["reserved"] == 0 and spent < limit):
                    continue
                raise ApiError(429, f"Cloud money budget for app '{app}': the per-{period} budget of "
                                    f"${limit:.2f} has ${spent:.4f} spent and ${st['reserved']:.4f} reserved; this "
                                    f"call may cost up to ${need:.4f} on cloud route '{route}'.",
                               type="insufficient_quota", code=f"budget_exceeded_usd_{period}",
                               headers={"Retry-After": "60", "x-homelab-budget": f"usd_{period}"})
            st["reserved"] += need
        return need

    def settle(self, app: Optional[str], route: str, usage: Optional[dict], held: float) -> None:
        if self.cfg is None or app is None:
            return
        r = self.cfg.routes.get(route)
        pt = int((usage or {}).get("prompt_tokens") or 0)
        ct = int((usage or {}).get("completion_tokens") or 0)
        with self.lock:
            st = self._app(app, self.clock())
            st["reserved"] = max(0.0, st["reserved"] - held)
            if r is None:
                return
            if r.kind == "cloud":
                usd = cost(route_price(self.cfg, route), pt, ct)
                st["usd_day"] += usd
                st["usd_month"] += usd
                self.spent[(app, route)] = self.spent.get((app, route), 0.0) + usd
            elif self.ref is not None and (pt or ct):
                self.saved[(app, route)] = self.saved.get((app, route), 0.0) + cost(self.ref, pt, ct)

    # ------------------------------------------------------------------ visibility
    def as_json(self) -> dict:
        with self.lock:
            spend: dict = {}
            for (app, route), usd in sorted(self.spent.items()):
                spend.setdefault(app, {})[route] = round(usd, 6)
            saved: dict = {}
            for (app, route), usd in sorted(self.saved.items()):
                saved.setdefault(app, {})[route] = round(usd, 6)
            budgets = {}
            for app, st in sorted(self.apps.items()):
                b = self.budget(app)
                budgets[app] = {"usd_today": round(st["usd_day"], 6), "usd_this_month": round(st["usd_month"], 6),
                                "usd_reserved": round(st["reserved"], 6),
                                "usd_per_day": b.usd_per_day if b else None,
                                "usd_per_month": b.usd_per_month if b else None}
        return {"spend_usd_total": round(sum(self.spent.values()), 6), "spend_usd": spend,
                "saved_vs_cloud_usd_total": round(sum(self.saved.values()), 6), "saved_vs_cloud_usd": saved,
                "compare_to": self.site.compare_to, "apps": budgets}

    def render(self) -> str:
        L = ["# HELP homelab_cloud_spend_usd_total Money spent on cloud routes, per app and route.",
             "# TYPE homelab_cloud_spend_usd_total counter"]
        with self.lock:
            for (app, route), usd in sorted(self.spent.items()):
                L.append(f'homelab_cloud_spend_usd_total{{app="{_esc(app)}",route="{_esc(route)}"}} {usd:.6f}')
            L += ["# HELP homelab_cloud_saved_usd_total What local answers would have cost at cloud.compare_to.",
                  "# TYPE homelab_cloud_saved_usd_total counter"]
            for (app, route), usd in sorted(self.saved.items()):
                L.append(f'homelab_cloud_saved_usd_total{{app="{_esc(app)}",route="{_esc(route)}"}} {usd:.6f}')
            L += ["# HELP homelab_cloud_budget_remaining_usd Money left in an app's cloud budget.",
                  "# TYPE homelab_cloud_budget_remaining_usd gauge"]
            for app, st in sorted(self.apps.items()):
                b = self.budget(app)
                for period, limit in (("day", b.usd_per_day if b else None), ("month", b.usd_per_month if b else None)):
                    if limit is not None:
                        L.append(f'homelab_cloud_budget_remaining_usd{{app="{_esc(app)}",period="{period}"}} '
                                 f'{limit - st["usd_" + period]:.6f}')
        return "\n".join(L) + "\n"


def of(app: Any) -> CloudSpend:
    """The router's CloudSpend (made on first use, kept across reloads, configured with the live config)."""
    sp = getattr(app, "cloud_spend", None)
    if sp is None:
        sp = app.cloud_spend = CloudSpend()
        sp.configure(app.runtime.config)
        sp.load(getattr(getattr(app, "access", None), "store", None))
    sp.configure(app.runtime.config)
    return sp
