from cli.pytest.split import lpt, split


def ids(n: int, files: int = 1) -> list[str]:
    return [f"tests/test_{i % files}.py::test_{i}" for i in range(n)]


def test_lpt_balances_and_puts_big_chunks_first() -> None:
    chunks = lpt({"a": 5, "b": 4, "c": 3, "d": 3, "e": 2, "f": 1}, 2)
    assert [round(c.seconds) for c in chunks] == [9, 9]
    assert sorted(n for c in chunks for n in c.node_ids) == list("abcdef")


def test_history_packs_by_duration_and_keeps_collection_order() -> None:
    nodes = ids(8)
    durations = {n: (10.0 if i == 0 else 1.0) for i, n in enumerate(nodes)}
    result = split(nodes, durations, slots=2)
    assert result.by_history and result.known == 8
    assert result.chunks[0].node_ids == [nodes[0]]  # the long test alone, first
    for c in result.chunks:
        assert c.node_ids == sorted(c.node_ids, key=nodes.index)
    assert sorted(n for c in result.chunks for n in c.node_ids) == sorted(nodes)


def test_without_history_it_splits_by_file_and_says_so() -> None:
    nodes = ids(12, files=4)
    result = split(nodes, {}, slots=2)
    assert not result.by_history
    for c in result.chunks:
        files = {n.split("::")[0] for n in c.node_ids}
        assert all(sum(1 for n in nodes if n.startswith(f)) == sum(
            1 for n in c.node_ids if n.startswith(f)) for f in files)  # whole files
    assert sorted(n for c in result.chunks for n in c.node_ids) == sorted(nodes)


def test_one_big_file_is_still_spread_over_the_slots() -> None:
    result = split(ids(100), {}, slots=2)
    assert len(result.chunks) == 4
    assert sorted(len(c.node_ids) for c in result.chunks) == [25, 25, 25, 25]


def test_partial_history_falls_back_to_files() -> None:
    nodes = ids(10, files=2)
    assert not split(nodes, {nodes[0]: 1.0}, slots=2).by_history
