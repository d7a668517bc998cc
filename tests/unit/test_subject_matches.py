"""NATS wildcard matching as the in-memory log implements it."""

from __future__ import annotations

import pytest

from agents.log.port import covering_filter
from dtf_core.subjects import subject_matches


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


@pytest.mark.parametrize(
    ("filters", "cover"),
    [
        (["dtf.evt.task.>", "dtf.evt.worker.>"], "dtf.evt.>"),
        (["dtf.evt.task.*.succeeded", "dtf.evt.task.*.failed"], "dtf.evt.task.*.>"),
        (["dtf.evt.tests.r1.>", "dtf.evt.task.*.failed"], "dtf.evt.>"),
        (["a.b", "a.b.c"], None),  # "a.b.>" would miss "a.b"
        (["a.>", "b.>"], None),
        ([">", "a.b"], None),
        (["a.>", "a.b.>"], "a.>"),  # ">" is never a prefix token
    ],
)
def test_covering_filter(filters: list[str], cover: str | None) -> None:
    assert covering_filter(filters) == cover


@pytest.mark.parametrize("subject", ["dtf.evt.task.t1.succeeded", "dtf.evt.task.t1.leased.w1",
                                     "dtf.evt.worker.w1.registered", "dtf.evt.tests.r.t",
                                     "dtf.evt.task.t1.failed", "dtf.hb.w1"])
def test_the_covering_filter_matches_whatever_a_filter_matches(subject: str) -> None:
    filters = ["dtf.evt.task.*.succeeded", "dtf.evt.task.*.leased.*", "dtf.evt.worker.>"]
    cover = covering_filter(filters)
    assert cover is not None
    if any(subject_matches(f, subject) for f in filters):
        assert subject_matches(cover, subject)
