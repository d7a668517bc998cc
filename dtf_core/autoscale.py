"""The autoscaler's rules: how many workers a group should have, and why.

Pure: the figures the agent read from its fold (queue, waits, predicted work, the group's
workers) and the time come in; a decision with its reason comes out. Scaling up asks for
as many workers as the queued work needs to end within ``target_s`` (never more than one
per slot's worth of tasks, never past ``max_workers``); scaling down drains only idle
workers, after ``cooldown_s`` without a change, never below ``min_workers``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

from msgspec import Struct

from dtf_core.errors import InvalidInput
from dtf_core.spec import TaskSpec

Direction = Literal["up", "down", "hold"]
DEFAULT_ESTIMATE_S = 1.0  # a task of a kind never measured


class Limits(Struct, frozen=True, kw_only=True):
    min_workers: int = 0
    max_workers: int = 4
    cooldown_s: float = 30.0  # no scale-down sooner than this after any change
    # no second scale-up sooner than this after the last; none by default (as Kubernetes'
    # HPA): workers still starting count, so a second step adds only what is missing
    up_cooldown_s: float = 0.0
    target_s: float = 5.0  # the queued work should end within this
    wait_s: float = 5.0  # a task queued this long asks for one more worker

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError(f"need 0 <= min <= max workers, got {self.min_workers}-"
                             f"{self.max_workers}")
        if self.cooldown_s < 0 or self.up_cooldown_s < 0 or self.target_s <= 0:
            raise ValueError("cooldowns must be >= 0 and the target > 0")


class Load(Struct, frozen=True, kw_only=True):
    """What the agent saw. ``workers``: the group's workers alive or starting, not draining;
    ``idle``: those of them holding no lease; ``other_free``: free slots on open workers
    outside the group, at most as many as the queued tasks that may run there (those that
    do not require the group)."""

    queued: int = 0
    running: int = 0
    predicted_s: float = 0.0  # estimated seconds of the queued tasks, all together
    oldest_wait_s: float = 0.0
    workers: int = 0
    idle: tuple[str, ...] = ()
    slots: int = 1  # per worker of the group
    other_free: int = 0
    last_week_s: float = 0.0  # work submitted in the coming hour of the same day last week


class Decision(Struct, frozen=True, kw_only=True):
    direction: Direction
    target: int
    reason: str
    drain: tuple[str, ...] = ()  # on the way down: the idle workers to drain and stop

    @property
    def count(self) -> int:
        return len(self.drain) if self.direction == "down" else 0


def wanted(load: Load, limits: Limits) -> tuple[int, str]:
    """How many workers the load asks for (before the limits), and why."""
    slots = max(1, load.slots)
    busy = math.ceil(load.running / slots) if load.running else 0
    seasonal = math.ceil(load.last_week_s / 3600 / slots) if load.last_week_s > 0 else 0
    if load.queued <= max(0, load.other_free):
        why = f"{load.queued} queued, {load.running} running"
        if seasonal > busy:
            return seasonal, (f"{why}; the same hour last week had "
                              f"{load.last_week_s:.0f}s of work")
        return busy, why
    queued = load.queued - max(0, load.other_free)
    by_count = math.ceil((queued + load.running) / slots)
    need = by_count
    why = f"{load.queued} queued and {load.running} running need {by_count} worker(s)"
    if load.predicted_s > 0:
        by_work = busy + math.ceil(load.predicted_s / (limits.target_s * slots))
        if by_work < by_count:
            need = max(by_work, 1)
            why = (f"{load.queued} queued ({load.predicted_s:.1f}s of predicted work) end "
                   f"within {limits.target_s:g}s on {need} worker(s)")
    if need <= load.workers and load.oldest_wait_s >= limits.wait_s:
        need = load.workers + 1
        why = f"a task has waited {load.oldest_wait_s:.1f}s (over {limits.wait_s:g}s)"
    if seasonal > need:
        return seasonal, f"{why}; the same hour last week had {load.last_week_s:.0f}s of work"
    return need, why


def decide(load: Load, limits: Limits, *, now: float, last_up_at: float | None,
           last_change_at: float | None) -> Decision:
    """Scale up, down or hold. ``last_up_at``: the last scale-up decision's time;
    ``last_change_at``: the last decision's of either kind (None: never)."""
    current = load.workers
    if current < limits.min_workers:
        return Decision(direction="up", target=limits.min_workers,
                        reason=f"{current} worker(s), below the minimum {limits.min_workers}")
    if current > limits.max_workers and load.idle:
        drain = tuple(sorted(load.idle)[:current - limits.max_workers])
        return Decision(direction="down", target=current - len(drain), drain=drain,
                        reason=f"{current} worker(s), above the maximum {limits.max_workers}")
    need, why = wanted(load, limits)
    target = min(max(need, limits.min_workers), limits.max_workers)
    if target > current:
        if last_up_at is not None and now - last_up_at < limits.up_cooldown_s:
            return Decision(direction="hold", target=current,
                            reason=f"{why}; scale-up cooling down "
                                   f"({now - last_up_at:.1f}s of {limits.up_cooldown_s:g}s)")
        capped = f" (capped at the maximum {limits.max_workers})" \
            if need > limits.max_workers else ""
        return Decision(direction="up", target=target, reason=f"{why}{capped}")
    if target < current:
        if last_change_at is not None and now - last_change_at < limits.cooldown_s:
            return Decision(direction="hold", target=current,
                            reason=f"{why}; scale-down cooling down "
                                   f"({now - last_change_at:.1f}s of {limits.cooldown_s:g}s)")
        drain = tuple(sorted(load.idle)[:current - target])
        if not drain:
            return Decision(direction="hold", target=current,
                            reason=f"{why}; no idle worker to drain")
        return Decision(direction="down", target=current - len(drain), drain=drain,
                        reason=f"{why}: {len(drain)} idle worker(s) to drain")
    return Decision(direction="hold", target=current, reason=why)


def estimate_key(spec: TaskSpec) -> str:
    """Tasks alike for duration estimates: a command by its program and first argument, a
    test chunk by its selection, others by their type."""
    config = spec.config
    argv = getattr(config, "argv", None)
    if argv:
        return "command:" + " ".join(str(a) for a in argv[:2])
    tests = getattr(config, "node_ids", None)
    if tests:
        return "test:" + ",".join(sorted(str(t) for t in tests))[:200]
    return f"type:{spec.type}"


def learn(means: dict[str, float], key: str, duration_s: float, weight: float = 0.3) -> None:
    """Fold one measured duration into the running means (an exponential average)."""
    old = means.get(key)
    means[key] = duration_s if old is None else old + weight * (duration_s - old)


def predicted_s(specs: Iterable[TaskSpec], means: Mapping[str, float],
                test_durations: Mapping[str, float] | None = None,
                default: float = DEFAULT_ESTIMATE_S) -> float:
    """The queued tasks' estimated seconds: each from the measured durations of its tests
    (``test_durations``, test id -> seconds), else from tasks alike, else ``default``."""
    total = 0.0
    for spec in specs:
        tests = getattr(spec.config, "node_ids", None)
        if tests and test_durations and all(t in test_durations for t in tests):
            total += sum(test_durations[t] for t in tests)
            continue
        total += means.get(estimate_key(spec), default)
    return total


PROVIDERS = ("local", "docker", "kubernetes")
MAX_WORKERS = 1000


def parse_spec(text: str) -> tuple[str, int, int]:
    """``PROVIDER:MIN-MAX`` (``local:0-4``) -> (provider, min, max); a clear error else."""
    usage = (f"--autoscale takes PROVIDER:MIN-MAX with PROVIDER one of {', '.join(PROVIDERS)} "
             f"and 0 <= MIN <= MAX <= {MAX_WORKERS}, MAX >= 1 (e.g. local:0-4), not {text!r}")
    provider, sep, bounds = text.partition(":")
    low, dash, high = bounds.partition("-")
    if (not sep or not dash or provider not in PROVIDERS
            or not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit())):
        raise InvalidInput(usage)
    lo, hi = int(low), int(high)
    if not lo <= hi <= MAX_WORKERS or hi == 0:
        raise InvalidInput(usage)
    return provider, lo, hi
