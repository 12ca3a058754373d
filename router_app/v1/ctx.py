"""The facts of one /v1 call, shared by the pipeline's steps, and the routing headers every answer carries."""
from __future__ import annotations

import time
from typing import Optional

from ..decision.policy import Decision

# An app that serves several people (Open WebUI with ENABLE_FORWARD_USER_INFO_HEADERS) names the person behind a
# call; the ledger keeps it beside the app's key. A label only: keys, budgets and limits stay per app.
_USER_HEADERS = (b"x-openwebui-user-email", b"x-openwebui-user-id")


class Ctx:
    __slots__ = ("cloud_hold", "t0", "req_id", "endpoint", "rt", "body", "decision", "principal", "ticket", "stream",
                 "client_usage", "usage_added", "route", "bucket", "reason", "hops", "status", "usage",
                 "overhead_ms", "error_code", "authz", "route_hdr", "bucket_hdr", "client_host", "body_s",
                 "upstream_s", "queue_s", "allowed", "surface", "catalog", "catalog_held", "notice",
                 "committed", "end_user")

    def __init__(self, t0: float, req_id: str, endpoint: str, rt):
        self.t0, self.req_id, self.endpoint, self.rt = t0, req_id, endpoint, rt
        self.surface = endpoint       # the API the client called (`responses` runs as a `chat` call)
        self.body = None
        self.decision: Optional[Decision] = None
        self.principal = None
        self.cloud_hold = 0.0         # USD reserved against the app's cloud money budget (router_app/cloud/spend.py)
        self.ticket = None
        self.stream = False
        self.client_usage = False     # the client asked for the usage chunk itself
        self.usage_added = False      # the router asked the engine for it (and strips it again)
        self.route = "none"
        self.bucket = "none"
        self.reason = "none"
        self.hops: list = []
        self.status = 0
        self.usage = None
        self.overhead_ms = 0.0
        self.error_code = None
        self.authz = self.route_hdr = self.bucket_hdr = None
        self.client_host = ""
        self.allowed = None
        self.end_user = None          # the calling app's own user (X-OpenWebUI-User-Email / -Id), a ledger label
        self.body_s = 0.0             # the client's upload time
        self.upstream_s = 0.0         # every engine attempt, failed ones included
        self.queue_s = 0.0            # waiting for a slot
        self.catalog = None           # a Placement when the catalog answers for the model (router_app/catalog)
        self.catalog_held: list = []  # (route, model) the request holds: eviction never touches them
        self.notice = None            # async (model, route): a streamed request is about to wait for a load
        self.committed = False        # the stream's head (200) already went out with a loading notice

    def stop_clock(self) -> None:
        """Overhead = the router's own time: the total less upload, queueing and every engine attempt."""
        spent = time.perf_counter() - self.t0 - self.body_s - self.upstream_s - self.queue_s
        self.overhead_ms = max(0.0, spent * 1000)


def begin(scope, endpoint: str, rt, new_id) -> Ctx:
    """Reads the request's headers once (nothing of the body yet)."""
    t0 = time.perf_counter()
    rid = authz = route_hdr = bucket_hdr = user = None
    for k, v in scope["headers"]:
        if k == b"authorization":
            authz = v.decode("latin-1")
        elif k == b"x-homelab-route":
            route_hdr = v.decode("latin-1").strip()
        elif k == b"x-homelab-bucket":
            bucket_hdr = v.decode("latin-1").strip()
        elif k == b"x-request-id":
            rid = v.decode("latin-1")[:64]
        elif k in _USER_HEADERS and (user is None or k == b"x-openwebui-user-email"):
            user = v.decode("latin-1").strip()[:200] or None
    ctx = Ctx(t0, rid or new_id(), endpoint, rt)
    ctx.authz, ctx.route_hdr, ctx.bucket_hdr, ctx.end_user = authz, route_hdr, bucket_hdr, user
    client = scope.get("client")
    ctx.client_host = client[0] if client else ""
    return ctx


def route_headers(ctx: Ctx) -> list:
    return [
        (b"x-homelab-route", ctx.route.encode("latin-1", "replace")),
        (b"x-homelab-bucket", ctx.bucket.encode("latin-1", "replace")),
        (b"x-homelab-reason", ctx.reason.encode("latin-1", "replace")),
        (b"x-homelab-overhead-ms", f"{ctx.overhead_ms:.3f}".encode()),
        (b"x-request-id", ctx.req_id.encode("latin-1", "replace")),
    ]
