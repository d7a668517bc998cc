"""Given a load and the limits, when the autoscaler decides, then it scales as the table says."""

from __future__ import annotations

import pytest

from dtf_core.autoscale import (
    Limits,
    Load,
    decide,
    estimate_key,
    learn,
    parse_spec,
    predicted_s,
)
from dtf_core.errors import InvalidInput
from dtf_core.spec import TaskSpec, command_spec

NOW = 1000.0
LIMITS = Limits(min_workers=0, max_workers=4, cooldown_s=30.0, up_cooldown_s=2.0,
                target_s=10.0, wait_s=5.0)

# (name, load, last_up_at, last_change_at, then: (direction, target, drained, reason part))
CASES = [
    ("idle and empty holds at zero", Load(), None, None, ("hold", 0, (), "0 queued")),
    ("a burst asks for one worker per slot's worth of tasks",
     Load(queued=3, slots=1), None, None, ("up", 3, (), "need 3 worker(s)")),
    ("a big burst is capped at the maximum",
     Load(queued=40, slots=2, workers=1), None, None, ("up", 4, (), "capped at the maximum 4")),
    ("short predicted work needs fewer workers than its count",
     Load(queued=8, predicted_s=8.0, slots=1), None, None, ("up", 1, (), "predicted work")),
    ("long predicted work uses the count",
     Load(queued=3, predicted_s=300.0, slots=1), None, None, ("up", 3, (), "need 3")),
    ("a second scale-up waits for its cooldown",
     Load(queued=9, workers=2, slots=1), NOW - 1.0, NOW - 1.0, ("hold", 2, (), "cooling down")),
    ("after the up cooldown it scales up again",
     Load(queued=9, workers=2, slots=1), NOW - 2.5, NOW - 2.5,
     ("up", 4, (), "need 9 worker(s) (capped at the maximum 4)")),
    ("below the minimum it starts workers at once",
     Load(workers=0), NOW - 0.1, NOW - 0.1, ("up", 1, (), "below the minimum")),
    ("an empty queue drains idle workers after the cooldown",
     Load(workers=3, idle=("a-3", "a-1", "a-2")), NOW - 40, NOW - 40,
     ("down", 0, ("a-1", "a-2", "a-3"), "idle worker(s) to drain")),
    ("no scale-down inside the cooldown",
     Load(workers=3, idle=("a-1", "a-2", "a-3")), NOW - 40, NOW - 10,
     ("hold", 3, (), "scale-down cooling down")),
    ("busy workers are never drained",
     Load(running=2, workers=4, idle=("a-4",), slots=1), None, NOW - 60,
     ("down", 3, ("a-4",), "1 idle")),
    ("nothing idle: nothing to drain",
     Load(running=1, workers=2, idle=(), slots=1), None, NOW - 60,
     ("hold", 2, (), "no idle worker")),
    ("a long wait asks for one more",
     Load(queued=1, running=2, workers=2, slots=2, predicted_s=1.0, oldest_wait_s=6.0),
     None, None, ("up", 3, (), "waited 6.0s")),
    ("free slots outside the group take the queue",
     Load(queued=2, other_free=2, workers=0), None, None, ("hold", 0, (), "2 queued")),
    ("the same hour last week keeps workers warm",
     Load(workers=0, last_week_s=7200.0, slots=1), None, None, ("up", 2, (), "last week")),
]


@pytest.mark.parametrize(("name", "load", "last_up", "last_change", "then"), CASES,
                         ids=[c[0] for c in CASES])
def test_decide(name: str, load: Load, last_up: float | None, last_change: float | None,
                then: tuple[str, int, tuple[str, ...], str]) -> None:
    d = decide(load, LIMITS if "minimum" not in name else Limits(min_workers=1),
               now=NOW, last_up_at=last_up, last_change_at=last_change)
    direction, target, drained, reason = then
    assert (d.direction, d.target, d.drain) == (direction, target, drained), d.reason
    assert reason in d.reason


def test_above_the_maximum_drains_idle_workers_even_in_cooldown() -> None:
    d = decide(Load(workers=5, idle=("b", "a")), Limits(max_workers=3), now=NOW,
               last_up_at=NOW, last_change_at=NOW)
    assert (d.direction, d.target, d.drain) == ("down", 3, ("a", "b"))
    assert "above the maximum 3" in d.reason


@pytest.mark.parametrize("bad", [dict(min_workers=3, max_workers=2), dict(min_workers=-1),
                                 dict(target_s=0), dict(cooldown_s=-1)])
def test_limits_refuse_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Limits(**bad)  # type: ignore[arg-type]


def test_predicted_work_from_measured_durations() -> None:
    means: dict[str, float] = {}
    sleep = command_spec(["sleep", "0.5"])
    learn(means, estimate_key(sleep), 0.5)
    learn(means, estimate_key(sleep), 1.5)  # an exponential mean moves toward the new one
    assert means[estimate_key(sleep)] == pytest.approx(0.8)
    other = TaskSpec(type="noop")
    assert predicted_s([sleep, sleep, other], means, default=2.0) == pytest.approx(3.6)


def test_spec_parses_provider_and_bounds() -> None:
    assert parse_spec("local:0-4") == ("local", 0, 4)
    assert parse_spec("kubernetes:2-20") == ("kubernetes", 2, 20)


@pytest.mark.parametrize("bad", ["local", "local:4", "local:4-2", "ec2:0-4", "local:-1-4",
                                 "local:0-0", "local: 0-4", "local:0-4x", "local:0-²",
                                 "local:0-100000"])
def test_spec_refuses_what_it_cannot_mean(bad: str) -> None:
    with pytest.raises(InvalidInput, match="PROVIDER:MIN-MAX"):
        parse_spec(bad)
