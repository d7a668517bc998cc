"""Ids end up in NATS subjects: only plain ASCII tokens pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtf_core.errors import InvalidInput
from dtf_core.ids import child_id, is_valid_id, task_id_for_key, validate_id


@pytest.mark.parametrize("value", ["t1", "A-b_9", "x" * 64, "-", "_"])
def test_valid_ids_pass_unchanged(value: str) -> None:
    assert validate_id(value) == value
    assert is_valid_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a.b",
        "*",
        "a*",
        ">",
        "a>",
        "a b",
        " a",
        "a\n",
        "a\t",
        "x" * 65,
        "\uff41",  # fullwidth a
        "t\u0430sk",  # Cyrillic a
        "caf\u00e9",
        "a\u200bb",  # zero-width space
        "\u0661",  # Arabic-Indic digit one
        "a/b",
        "a$b",
    ],
)
def test_unsafe_ids_are_refused_with_what_they_are(value: str) -> None:
    with pytest.raises(InvalidInput, match="invalid worker id"):
        validate_id(value, "worker id")
    assert not is_valid_id(value)


@pytest.mark.parametrize("value", [None, 1, b"t1", ["t1"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        validate_id(value)
    assert not is_valid_id(value)


@given(st.text(max_size=80))
def test_a_valid_id_never_splits_a_subject(value: str) -> None:
    if is_valid_id(value):
        assert value.isascii() and 1 <= len(value) <= 64
        assert not set(value) & {".", "*", ">", " ", "\n", "\r", "\t"}


def test_task_id_for_key_is_deterministic_and_valid() -> None:
    assert task_id_for_key("ci-123/unit") == task_id_for_key("ci-123/unit")
    assert task_id_for_key("ci-123/unit") != task_id_for_key("ci-123/unit2")
    assert validate_id(task_id_for_key("ci-123/unit")) == task_id_for_key("ci-123/unit")


@given(st.text(min_size=1, max_size=256))
def test_any_key_maps_to_a_valid_id(key: str) -> None:
    assert is_valid_id(task_id_for_key(key))


def test_child_ids_are_deterministic_distinct_and_valid() -> None:
    ids = [child_id("sub-1", i) for i in range(100)]
    assert ids == [child_id("sub-1", i) for i in range(100)]
    assert len(set(ids)) == 100
    assert child_id("sub-2", 0) not in ids
    assert all(is_valid_id(i) for i in ids)
