"""Auto-routing within what a key may use (issue 11 item 9).

A key with a model/route whitelist sends a prompt whose keywords point at a route it may not use ("refactor
this" from a chat-only key). Instead of a 403, `decide()` asks `reroute()` for the best route the key may use,
by the same scoring the classifier used:

  1. the other buckets that scored, best first (score, then tie_break rank), each with its size promotion;
  2. the failover chain of the route the classifier chose (the fallbacks it would take if that route were down);
  3. the `unknown` bucket's route, then every other bucket's route in tie_break order.

Only routes the key may use, that are not drained, and that can see images when the request carries one, are
candidates. Route pins and bucket pins are never rerouted (a pin to a forbidden route stays a 403).
Returns (bucket, route) or None when the key may use no route that can serve the request.
"""
from __future__ import annotations

from typing import Iterable, Optional

from .config import UNKNOWN_BUCKET


def _promoted(policy, bucket: str, est: int, has_image: bool, ok) -> Optional[str]:
    """The bucket's route after size promotion, restricted to candidates `ok` accepts."""
    base = policy.buckets[bucket]
    for over, target in policy.promotions.get(bucket, ()):
        if est > over and ok(target):
            return target
    return base if ok(base) else None


def reroute(policy, bucket: str, route: str, scores: dict, has_image: bool, est: int,
            allowed: frozenset, drained: Iterable[str]) -> Optional[tuple[str, str]]:
    drained = frozenset(drained or ())

    def ok(r: str) -> bool:
        return r in allowed and r not in drained and (not has_image or policy.vision.get(r, False))

    rank = policy.rank
    scored = sorted((b for b in scores if b != bucket and b in policy.buckets),
                    key=lambda b: (-scores[b], rank.get(b, 1 << 30), b))
    for b in scored:
        r = _promoted(policy, b, est, has_image, ok)
        if r is not None:
            return b, r
    for r in policy.failover_chain(route, has_image):
        if ok(r):
            return bucket, r
    rest = [UNKNOWN_BUCKET] if UNKNOWN_BUCKET in policy.buckets else []
    rest += sorted((b for b in policy.buckets if b != UNKNOWN_BUCKET), key=lambda b: (rank.get(b, 1 << 30), b))
    for b in rest:
        r = policy.buckets[b]
        if ok(r):
            return bucket, r
    return None
