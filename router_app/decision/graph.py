"""Graph helpers for the config's semantic checks (pure)."""
from __future__ import annotations

from typing import Optional


def find_cycle(edges: dict[str, set[str]]) -> Optional[list[str]]:
    """A cycle in a directed graph (node -> successors) as [a, b, ..., a], or None; deterministic (sorted walk)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in edges}
    stack: list[str] = []

    def visit(n: str) -> Optional[list[str]]:
        color[n] = GREY
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if m not in color:
                continue
            if color[m] == GREY:
                return stack[stack.index(m):] + [m]
            if color[m] == WHITE:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(edges):
        if color[n] == WHITE:
            c = visit(n)
            if c:
                return c
    return None
