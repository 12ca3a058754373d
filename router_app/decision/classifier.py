"""The keyword classifier: whole-word, case-insensitive keyword and phrase matching, compiled once per policy into
one regex (a trie of alternatives). Each distinct keyword counts once; ties go to the earlier bucket in tie_break."""
from __future__ import annotations

import re

from .config import UNKNOWN_BUCKET

def _partial_overlaps(kws) -> bool:
    """True when some keyword could begin inside another's match and run past its end ("tool use" / "use case")."""
    norm = [" ".join(k.split()) for k in kws]
    for k1 in norm:
        for j in range(1, len(k1)):
            prev = k1[j - 1]
            if prev.isalnum() or prev == "_":
                continue
            tail = k1[j:].lstrip()
            if not tail:
                continue
            for k2 in norm:
                if len(k2) > len(tail) and k2.startswith(tail) and not (k2[len(tail)].isalnum()
                                                                         or k2[len(tail)] == "_"):
                    return True
    return False


def _kw_pattern(kw: str) -> str:
    return r"\s+".join(re.escape(w) for w in kw.split())


def _units(kw: str) -> list:
    """A keyword as regex units: escaped characters, with any whitespace run as one \\s+ unit."""
    out = []
    for i, w in enumerate(kw.split()):
        if i:
            out.append(r"\s+")
        out.extend(re.escape(c) for c in w)
    return out


def _trie_regex(kws) -> str:
    """One alternation shaped as a prefix trie (much faster than a flat list of alternatives in Python's re).
    Longer continuations are tried before a keyword ends, so the longest keyword at a position wins."""
    trie: dict = {}
    for k in kws:
        node = trie
        for u in _units(k):
            node = node.setdefault(u, {})
        node[""] = True

    def emit(node) -> str:
        alts = [u + emit(child) for u, child in sorted(node.items()) if u != ""]
        if not alts:
            return ""
        if "" in node:                      # a keyword may end here: the continuation is optional (greedy)
            return "(?:" + "|".join(alts) + ")?"
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(trie)


class Classifier:
    """Keyword scoring: each distinct keyword/phrase counts once, on word boundaries, case-insensitively."""

    def __init__(self, buckets: dict[str, list[str]], rank: dict[str, int]):
        self.rank = rank
        self.kw_buckets: dict[str, tuple] = {}
        for b, kws in buckets.items():
            for k in kws:
                self.kw_buckets.setdefault(k, ())
                self.kw_buckets[k] = self.kw_buckets[k] + (b,)
        kws = sorted(self.kw_buckets, key=lambda k: (-len(k), k))
        # A phrase that contains another keyword on word boundaries credits it too ("summarize briefly" ⊃ "summarize").
        self.closure: dict[str, tuple] = {}
        single = {k: re.compile(r"(?<!\w)" + _kw_pattern(k) + r"(?!\w)") for k in kws}
        for k in kws:
            self.closure[k] = tuple(k2 for k2 in kws if k2 == k or (k2 != k and single[k2].search(k)))
        if kws:
            alt = _trie_regex(kws)
            if _partial_overlaps(kws):
                # zero-width lookahead: every start position is examined, so overlapping phrases are all found
                self.rx = re.compile(r"(?=(?<!\w)(" + alt + r")(?!\w))")
            else:
                # no keyword can start inside another one's match (other than the contained ones credited by
                # `closure`), so a consuming scan finds the same set, about twice as fast
                self.rx = re.compile(r"(?<!\w)(" + alt + r")(?!\w)")
        else:
            self.rx = None
        self._norm = {k: " ".join(k.split()) for k in kws}

    def matches(self, text: str) -> set:
        if self.rx is None or not text:
            return set()
        found = set()
        norm = self._norm
        closure = self.closure
        for m in self.rx.finditer(text.lower()):
            g = m.group(1)
            k = g if g in closure else norm.get(" ".join(g.split()), None) or " ".join(g.split())
            found.update(closure.get(k, (k,)))
        return found

    def classify(self, text: str) -> tuple[str, dict, dict]:
        """-> (bucket, matched {bucket: [kw,...]}, scores {bucket: n}). Nothing matched -> 'unknown'."""
        found = self.matches(text)
        if not found:
            return UNKNOWN_BUCKET, {}, {}
        matched: dict[str, list] = {}
        for k in found:
            for b in self.kw_buckets.get(k, ()):
                matched.setdefault(b, []).append(k)
        scores = {b: len(v) for b, v in matched.items()}
        rank = self.rank
        best = min(scores, key=lambda b: (-scores[b], rank.get(b, 1 << 30), b))
        return best, {b: sorted(v) for b, v in matched.items()}, scores


