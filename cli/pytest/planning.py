"""A run's plan: what was collected (kept per session key for the next run to start
from), and its tests in chunks per requirement group, for the workers that meet each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from agents.worker.packs import RunPlan
from agents.worker.pytest.freshness import collection_digest
from cli.pytest.split import Entry, split
from dtf_core.placement import mismatch
from dtf_core.replies import WorkerRow
from dtf_core.spec import Requirements

DURATIONS_CHUNK = 2000
DURATIONS_BYTES = 256 * 1024


@dataclass(frozen=True)
class Collected:
    """What a plan is made of: the tests in collection order, each with its xdist_group
    and requirements. Stored per session key for the next run to start from."""

    tests: tuple[Entry, ...]
    requirements: tuple[Requirements, ...]

    def encode(self) -> bytes:
        reqs = list(dict.fromkeys(self.requirements))
        index = {r: i for i, r in enumerate(reqs)}
        return msgspec.json.encode({
            "reqs": [msgspec.to_builtins(r) for r in reqs],
            "tests": [[t.nodeid, t.group, index[r]]
                      for t, r in zip(self.tests, self.requirements, strict=True)]})

    def run_plan(self, plan: Plan) -> RunPlan:
        return RunPlan(collection_digest([t.nodeid for t in self.tests]),
                       [c for _, c in plan.chunks])

    @classmethod
    def decode(cls, data: bytes) -> Collected:
        raw = msgspec.json.decode(data)
        reqs = [msgspec.convert(r, Requirements) for r in raw["reqs"]]
        return cls(tuple(Entry(str(n), str(g)) for n, g, _ in raw["tests"]),
                   tuple(reqs[int(i)] for _, _, i in raw["tests"]))


@dataclass
class Plan:
    chunks: list[tuple[Requirements, list[str]]] = field(default_factory=list)
    unmatched: list[tuple[Requirements, list[str]]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def make_plan(collected: Collected, durations: dict[str, float],
              workers: list[WorkerRow], mode: str, early: int = 0) -> Plan:
    """Chunks per requirement group, for the workers that meet it. With ``early`` chunks
    already submitted (for tests without requirements), those come first, exactly that
    many."""
    groups: dict[Requirements, list[Entry]] = {}
    if early:
        groups[Requirements()] = []
    for test, req in zip(collected.tests, collected.requirements, strict=True):
        groups.setdefault(req, []).append(test)
    plan = Plan()
    for req, tests in groups.items():
        matching = [w for w in workers if mismatch(req, w.capabilities) is None]
        if not matching:
            plan.unmatched.append((req, [t.nodeid for t in tests]))
            continue
        slots = sum(w.slots for w in matching)
        bins = early if early and req == Requirements() else None
        result = split(tests, durations, slots, mode, bins=bins)
        if tests:
            how = (f"packed by measured durations ({result.known} known)" if result.by_history
                   else f"no duration history for {len(tests) - result.known} of "
                        f"{len(tests)} tests: packed by test count")
            used = sum(1 for c in result.chunks if c.node_ids)
            plan.messages.append(f"{len(tests)} tests in {used} chunks of {result.units} "
                                 f"{mode} units, {how}")
        plan.chunks += [(req, c.node_ids) for c in result.chunks]
    return plan


def batches(node_ids: Sequence[str]) -> list[list[str]]:
    """Node ids in requests of bounded count and size (ids can be thousands of bytes)."""
    out: list[list[str]] = [[]]
    size = 0
    for nodeid in node_ids:
        if out[-1] and (len(out[-1]) >= DURATIONS_CHUNK
                        or size + len(nodeid) > DURATIONS_BYTES):
            out.append([])
            size = 0
        out[-1].append(nodeid)
        size += len(nodeid) + 8
    return [b for b in out if b]
