"""Dependency graphs: cycle detection for submissions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Return one cycle as a list of ids (first id repeated at the end), or [] if acyclic."""
    color: dict[str, int] = {}
    for root in edges:
        if color.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, list(edges.get(root, ())))]
        path = [root]
        color[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            state = color.get(nxt, 0)
            if state == 1:
                return [*path[path.index(nxt):], nxt]
            if state == 0:
                color[nxt] = 1
                path.append(nxt)
                stack.append((nxt, list(edges.get(nxt, ()))))
    return []
