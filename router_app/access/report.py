"""What the access layer shows operators: GET /admin/keys, its status line and the per-app Prometheus series.
A mixin of AccessController (it reads the controller's lock, counters and key snapshot)."""
from __future__ import annotations

from typing import Any, Optional

from .records import _AppState, _esc, _iso
from .store import utc_day, utc_month


class ReportMixin:
    # -- visibility -----------------------------------------------------------
    def cost(self, route: Optional[str], prompt_tokens: int, completion_tokens: int) -> float:
        p = self.settings.prices.get(route or "")
        if p is None:
            return 0.0
        return (prompt_tokens * p.input_per_mtok + completion_tokens * p.output_per_mtok) / 1e6

    def keys_report(self) -> list[dict[str, Any]]:
        """For GET /admin/keys: every active key (never secrets) with usage."""
        now = self._clock()
        out = []
        with self._lock:
            self._roll(now)
            for kid, (rec, allowed) in sorted(self._snap[0].items(), key=lambda kv: kv[1][0].app):
                st = self._apps.get(rec.app) or _AppState(utc_day(now), utc_month(now))
                d = rec.public()
                d["allowed_routes"] = sorted(allowed) if allowed is not None else None
                d["usage"] = {
                    "tokens_today": st.spent_day, "tokens_this_month": st.spent_month,
                    "reserved_in_flight": st.reserved, "in_flight": st.inflight,
                    "requests_last_minute": self._rate.used(rec.app),
                    "calls": sum(v for (a, _), v in self._metrics.calls.items() if a == rec.app),
                }
                d["budget_left"] = {
                    "day": (rec.tokens_per_day - st.spent_day) if rec.tokens_per_day else None,
                    "month": (rec.tokens_per_month - st.spent_month) if rec.tokens_per_month else None,
                    "day_resets_at": _iso(self._day_end), "month_resets_at": _iso(self._month_end),
                }
                out.append(d)
        return out

    def status(self) -> dict[str, Any]:
        return {"auth": self.settings.auth, "enforced": self.enforced, "keys": len(self._keys),
                "ledger": {"commits": self.writer.commits, "inline_commits": self.writer.inline_commits,
                           "rows": self.writer.rows_written,
                           "errors": self.writer.errors}}

    def render_metrics(self) -> str:
        """Prometheus text for the per-app series (labels: app, route)."""
        L: list[str] = []
        with self._lock:
            m = self._metrics
            apps = dict(self._apps)
            keys = list(self._keys.values())

            def counter(name: str, help_: str, d: dict[tuple[str, str], int]) -> None:
                L.append(f"# HELP {name} {help_}")
                L.append(f"# TYPE {name} counter")
                for (app, route), v in sorted(d.items()):
                    L.append(f'{name}{{app="{_esc(app)}",route="{_esc(route)}"}} {v}')

            counter("homelab_app_requests_total", "Admitted /v1 calls per app and route.", m.calls)
            counter("homelab_app_prompt_tokens_total", "Prompt tokens per app and route.", m.prompt)
            counter("homelab_app_completion_tokens_total", "Completion tokens per app and route.", m.completion)
            counter("homelab_app_errors_total", "Admitted calls answered with status >= 400.", m.errors)
            counter("homelab_app_forbidden_total", "Calls refused 403 (route not allowed).", m.forbidden)
            L.append("# HELP homelab_app_cost_equivalent_usd_total Cost at the configured cloud prices.")
            L.append("# TYPE homelab_app_cost_equivalent_usd_total counter")
            for (app, route), n in sorted(m.calls.items()):
                c = self.cost(route, m.prompt.get((app, route), 0), m.completion.get((app, route), 0))
                L.append(f'homelab_app_cost_equivalent_usd_total{{app="{_esc(app)}",route="{_esc(route)}"}} {c:.6f}')
            for name, help_, d in (
                    ("homelab_app_rate_limited_total", "Calls refused 429 by the rpm limit.", m.rate_limited),
                    ("homelab_app_budget_refused_total", "Calls refused 429 by a token budget.", m.budget_refused)):
                L.append(f"# HELP {name} {help_}")
                L.append(f"# TYPE {name} counter")
                for app, v in sorted(d.items()):
                    L.append(f'{name}{{app="{_esc(app)}"}} {v}')
            L.append("# HELP homelab_auth_failures_total Calls refused 401.")
            L.append("# TYPE homelab_auth_failures_total counter")
            L.append(f"homelab_auth_failures_total {m.unauthorized}")
            for name, help_, attr, per in (
                    ("homelab_app_budget_remaining_tokens_day", "Tokens left in the UTC day budget.",
                     "tokens_per_day", "spent_day"),
                    ("homelab_app_budget_remaining_tokens_month", "Tokens left in the UTC month budget.",
                     "tokens_per_month", "spent_month")):
                L.append(f"# HELP {name} {help_}")
                L.append(f"# TYPE {name} gauge")
                for rec in sorted(keys, key=lambda r: r.app):
                    lim = getattr(rec, attr)
                    if lim:
                        st = apps.get(rec.app)
                        used = getattr(st, per) if st else 0
                        L.append(f'{name}{{app="{_esc(rec.app)}"}} {lim - used}')
            L.append("# HELP homelab_app_reserved_tokens Tokens reserved by requests in flight.")
            L.append("# TYPE homelab_app_reserved_tokens gauge")
            for app, st in sorted(apps.items()):
                L.append(f'homelab_app_reserved_tokens{{app="{_esc(app)}"}} {st.reserved}')
        return "\n".join(L) + "\n"


