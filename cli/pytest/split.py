"""Splitting a run's tests into chunks. Pure functions.

Tests are grouped into units that must run in one process, in collection order, as
pytest-xdist's ``--dist`` modes group them: ``loadfile`` (the default: a module's tests
together, so module-level state and order-dependent tests behave as in plain pytest),
``loadscope`` (a class's tests together, a module's free functions together),
``loadgroup`` (``loadscope``, and ``@pytest.mark.xdist_group(name)`` together) and
``load`` (each test alone). ``xdist_group`` is honoured in every mode but ``load``.

Units are packed longest-processing-time-first into chunks, weighted by measured durations
(by test count when there is no history); a chunk runs its tests in collection order.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

DIST_MODES = ("loadfile", "loadscope", "loadgroup", "load")
DEFAULT_DIST = "loadfile"
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
    units: int


@dataclass(frozen=True)
class Entry:
    nodeid: str
    group: str = ""  # @pytest.mark.xdist_group's name


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def scope_of(nodeid: str) -> str:
    """pytest-xdist's loadscope: the class of a method, the module of a function."""
    param = nodeid.find("[")
    return nodeid[:param if param != -1 else len(nodeid)].rsplit("::", 1)[0]


def unit_of(test: Entry, mode: str) -> str:
    if mode == "load":
        return test.nodeid
    if test.group:
        return "@" + test.group
    if mode == "loadfile":
        return file_of(test.nodeid)
    return scope_of(test.nodeid)


def lpt(weights: dict[str, float], bins: int) -> list[list[str]]:
    """Longest-processing-time-first into ``bins``, returned biggest first, so that the
    scheduler places the long chunks first and the short ones fill in at the end."""
    heap: list[tuple[float, int]] = [(0.0, i) for i in range(bins)]
    members: list[list[str]] = [[] for _ in range(bins)]
    totals = [0.0] * bins
    for key, weight in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])):
        total, i = heapq.heappop(heap)
        members[i].append(key)
        totals[i] = total + weight
        heapq.heappush(heap, (total + weight, i))
    order = sorted((i for i in range(bins) if members[i]), key=lambda i: -totals[i])
    return [members[i] for i in order]


def split(tests: Sequence[Entry], durations: dict[str, float], slots: int,
          mode: str = DEFAULT_DIST, bins: int | None = None) -> Split:
    """Chunks for ``slots`` parallel sessions; exactly ``bins`` of them (some empty) when
    given: the chunks submitted before the tests were known."""
    units: dict[str, list[str]] = {}
    for test in tests:
        units.setdefault(unit_of(test, mode), []).append(test.nodeid)
    known = {t.nodeid: durations[t.nodeid] for t in tests if t.nodeid in durations}
    by_history = bool(tests) and len(known) >= MIN_HISTORY_FRACTION * len(tests)
    if by_history:
        ordered = sorted(known.values())
        median = ordered[len(ordered) // 2] if ordered else 0.0
        weight = {t.nodeid: max(known.get(t.nodeid, median), 1e-4) for t in tests}
    else:
        weight = {t.nodeid: 1.0 for t in tests}
    unit_weights = {u: sum(weight[n] for n in nodes) for u, nodes in units.items()}
    count = bins or max(1, min(len(units), max(1, slots) * CHUNKS_PER_SLOT))
    order = {t.nodeid: i for i, t in enumerate(tests)}
    chunks = []
    for members in lpt(unit_weights, count):
        nodes = sorted((n for u in members for n in units[u]), key=order.__getitem__)
        chunks.append(Chunk(nodes, sum(unit_weights[u] for u in members)))
    if bins:
        chunks += [Chunk() for _ in range(bins - len(chunks))]
    return Split(chunks, by_history, len(known), len(units))


def early_chunks(slots: int) -> int:
    """How many chunks to submit before the tests are known."""
    return max(1, slots) * CHUNKS_PER_SLOT
