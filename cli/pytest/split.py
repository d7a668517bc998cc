"""Splitting a run's tests into chunks: longest-processing-time packing on measured
durations, or by file when there is no history. Pure functions."""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

# Tests without history get the median of those with history.
MIN_HISTORY_FRACTION = 0.5
CHUNKS_PER_SLOT = 2


@dataclass
class Chunk:
    node_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Split:
    chunks: list[Chunk]
    by_history: bool
    known: int  # tests with a measured duration


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def lpt(weights: dict[str, float], bins: int) -> list[Chunk]:
    """Longest-processing-time-first into ``bins`` chunks, returned biggest first, so that
    the scheduler places the long chunks first and the short ones fill in at the end."""
    heap: list[tuple[float, int]] = [(0.0, i) for i in range(bins)]
    chunks = [Chunk() for _ in range(bins)]
    for key, weight in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])):
        total, i = heapq.heappop(heap)
        chunks[i].node_ids.append(key)
        chunks[i].seconds += weight
        heapq.heappush(heap, (total + weight, i))
    return sorted((c for c in chunks if c.node_ids), key=lambda c: -c.seconds)


def split(node_ids: list[str], durations: dict[str, float], slots: int) -> Split:
    """Chunks for ``slots`` parallel sessions. With history for most tests, pack tests by
    duration; otherwise pack whole files by test count."""
    bins = max(1, min(len(node_ids), max(1, slots) * CHUNKS_PER_SLOT))
    known = {n: durations[n] for n in node_ids if n in durations}
    if node_ids and len(known) >= MIN_HISTORY_FRACTION * len(node_ids):
        ordered = sorted(known.values())
        median = ordered[len(ordered) // 2] if ordered else 0.0
        weights = {n: max(known.get(n, median), 1e-4) for n in node_ids}
        chunks = lpt(weights, bins)
        order = {n: i for i, n in enumerate(node_ids)}
        for c in chunks:  # run in collection order inside a chunk (module fixtures reuse)
            c.node_ids.sort(key=order.__getitem__)
        return Split(chunks, True, len(known))
    per_file: dict[str, list[str]] = defaultdict(list)
    cap = -(-len(node_ids) // bins)  # a file bigger than one chunk's share is cut in pieces
    for n in node_ids:
        per_file[file_of(n) + "#"].append(n)
    per_file = _cut(per_file, cap)
    file_chunks = lpt({f: float(len(ns)) for f, ns in per_file.items()},
                      min(bins, len(per_file)))
    chunks = [Chunk([n for f in c.node_ids for n in per_file[f]], c.seconds)
              for c in file_chunks]
    return Split(chunks, False, len(known))


def _cut(per_file: dict[str, list[str]], cap: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, nodes in per_file.items():
        for i in range(0, len(nodes), cap):
            out[f"{key}{i // cap}"] = nodes[i:i + cap]
    return out
