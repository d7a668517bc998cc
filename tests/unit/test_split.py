"""Chunks: units of tests that share a process (as pytest-xdist's --dist modes), packed by
measured durations, each chunk in collection order."""

import pytest

from cli.pytest.split import Entry, lpt, scope_of, split, unit_of


def make(n: int, files: int = 1) -> list[Entry]:
    return [Entry(f"tests/test_{i % files}.py::test_{i}") for i in range(n)]


def flat(chunks: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(n for c in chunks for n in c.node_ids)


def test_lpt_balances_and_puts_big_bins_first() -> None:
    weights = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 2.0, "f": 1.0}
    bins = lpt(weights, 2)
    assert [sum(weights[k] for k in b) for b in bins] == [9, 9]
    assert sorted(k for b in bins for k in b) == list("abcdef")


def test_loadfile_keeps_each_module_whole_and_in_collection_order() -> None:
    nodes = make(12, files=4)
    result = split(nodes, {}, slots=2)
    assert not result.by_history and result.units == 4
    order = [t.nodeid for t in nodes]
    for c in result.chunks:
        assert c.node_ids == sorted(c.node_ids, key=order.index)
        for f in {n.split("::")[0] for n in c.node_ids}:  # a module is never cut
            assert [n for n in c.node_ids if n.startswith(f)] == \
                [n for n in order if n.startswith(f)]
    assert flat(result.chunks) == sorted(order)


def test_one_module_is_never_split_in_loadfile_but_is_in_load() -> None:
    assert len(split(make(100), {}, slots=2).chunks) == 1
    spread = split(make(100), {}, slots=2, mode="load")
    assert sorted(len(c.node_ids) for c in spread.chunks) == [25, 25, 25, 25]


def test_history_packs_units_by_duration() -> None:
    nodes = make(8, files=8)
    durations = {t.nodeid: (10.0 if i == 0 else 1.0) for i, t in enumerate(nodes)}
    result = split(nodes, durations, slots=2)
    assert result.by_history and result.known == 8
    assert result.chunks[0].node_ids == [nodes[0].nodeid]  # the long module alone, first
    assert result.chunks[0].seconds == 10.0


def test_partial_history_packs_by_count() -> None:
    nodes = make(10, files=2)
    assert not split(nodes, {nodes[0].nodeid: 1.0}, slots=2).by_history


@pytest.mark.parametrize(("nodeid", "scope"), [
    ("a/test_x.py::TestA::test_m[1::2]", "a/test_x.py::TestA"),
    ("a/test_x.py::test_f[p]", "a/test_x.py"),
    ("a/test_x.py::TestA::TestInner::test_m", "a/test_x.py::TestA::TestInner"),
])
def test_loadscope_is_xdists(nodeid: str, scope: str) -> None:
    assert scope_of(nodeid) == scope
    assert unit_of(Entry(nodeid), "loadscope") == scope


def test_xdist_group_keeps_its_tests_together_across_modules() -> None:
    nodes = [Entry("a.py::t1", "db"), Entry("a.py::t2"), Entry("b.py::t3", "db"), Entry("c.py::t4")]
    for mode in ("loadfile", "loadscope", "loadgroup"):
        result = split(nodes, {}, slots=4, mode=mode)
        together = [c for c in result.chunks if "a.py::t1" in c.node_ids]
        assert together and "b.py::t3" in together[0].node_ids, mode
    assert unit_of(nodes[0], "load") == "a.py::t1"  # `load`: each test alone
