"""NATS wildcard matching as the in-memory log implements it."""

from __future__ import annotations

import pytest

from agents.eventlog import subject_matches


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.b", "a.b.c", False),
        ("a.*.c", "a.x.c", True),
        ("a.*.c", "a.x.y.c", False),
        ("a.*", "a", False),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        (">", "a", True),
        ("*", "a.b", False),
        ("dtf.evt.task.*.leased.w1", "dtf.evt.task.t1.leased.w1", True),
        ("dtf.evt.task.*.leased.w1", "dtf.evt.task.t1.leased.w2", False),
        ("dtf.evt.task.t1.>", "dtf.evt.task.t10.submitted", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected
