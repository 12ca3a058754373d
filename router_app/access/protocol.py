"""The seam between the router core and access control (keys, budgets, rate limits).

The api holds one object implementing `AccessControl` on its state and calls it on every /v1 request:

    principal = access.authenticate(authorization_header, client_host)   # ApiError(401) to refuse
    allowed   = access.allowed_routes(principal)                         # None: every route
    access.check_pin(principal, route)                                   # only for explicit route pins; ApiError(403)
    ticket    = access.admit(principal, route, est_tokens)               # ApiError(429) to refuse
    ...the request is dispatched...
    access.settle(ticket, usage, route=..., bucket=..., status=..., latency_ms=...)
    access.release(ticket)                                               # always, in a finally

Auto-routing never lands on a forbidden route: the decision follows the bucket's route, then that route's failover
chain, to the first route in `allowed`; when none is allowed the answer is 403.

`OpenAccess` is the default: everyone is admitted, nothing is counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, runtime_checkable

from ..errors import ApiError

__all__ = ["AccessControl", "ApiError", "OpenAccess", "Principal"]


@dataclass(frozen=True)
class Principal:
    app: str
    allowed_routes: Optional[frozenset] = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@runtime_checkable
class AccessControl(Protocol):
    def authenticate(self, authorization: Optional[str], client_host: str) -> Optional[Principal]: ...

    def check_pin(self, principal: Optional[Principal], route: str) -> None: ...

    def allowed_routes(self, principal: Optional[Principal]) -> Optional[frozenset]: ...

    def admit(self, principal: Optional[Principal], route: str, est_tokens: int) -> object: ...

    def settle(self, ticket: object, usage: Optional[dict], *, route: str, bucket: str, status: int,
               latency_ms: float) -> None: ...

    def release(self, ticket: object) -> None: ...


class OpenAccess:
    """No keys, no budgets: every caller is admitted."""

    def authenticate(self, authorization, client_host):
        return None

    def check_pin(self, principal, route):
        return None

    def allowed_routes(self, principal):
        return None

    def admit(self, principal, route, est_tokens):
        return None

    def settle(self, ticket, usage, *, route, bucket, status, latency_ms):
        return None

    def release(self, ticket):
        return None

    def close(self):
        return None
