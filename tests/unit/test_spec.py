"""Parsing and validating the seed's task JSON."""

from __future__ import annotations

import json

import msgspec
import pytest

from dtf_core.errors import InvalidInput
from dtf_core.spec import (
    MAX_SPEC_BYTES,
    CommandConfig,
    TaskSpec,
    benchmark_config,
    command_config,
    command_spec,
    parse_specs,
    validate_spec,
)
from tests.helpers import SEED_BENCHMARK


def parse_one(obj: object) -> TaskSpec:
    [spec] = parse_specs(json.dumps(obj))
    return spec


def refused(obj: object) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_specs(json.dumps(obj))
    return str(info.value)


def test_a_full_command_task_parses() -> None:
    spec = parse_one({
        "type": "command",
        "id": "unit-1",
        "name": "unit tests",
        "priority": 5,
        "config": {"argv": ["pytest", "-q"], "cwd": "/src", "env": {"CI": "1"}},
        "requirements": {"hardware": ["gpu"], "min_memory_gb": 8, "min_cuda_compute": 8.0},
        "timeout_seconds": 600,
        "retry_policy": {"max_retries": 2, "retry_delay_seconds": 5},
        "dependencies": ["build"],
        "idempotency_key": "ci-123/unit",
    })
    assert (spec.type, spec.id, spec.priority) == ("command", "unit-1", 5)
    assert spec.requirements.hardware == ("gpu",)
    assert spec.requirements.min_cuda_compute == 8.0
    assert spec.retry_policy.max_retries == 2
    assert spec.dependencies == ("build",)
    assert command_config(spec) == CommandConfig(argv=("pytest", "-q"), cwd="/src",
                                                 env={"CI": "1"})


def test_a_list_parses_in_order() -> None:
    specs = parse_specs(b'[{"type": "noop", "name": "a"}, {"type": "noop", "name": "b"}]')
    assert [s.name for s in specs] == ["a", "b"]


def test_defaults_of_a_minimal_noop() -> None:
    spec = parse_one({"type": "noop"})
    assert spec == TaskSpec(type="noop")
    assert spec.retry_policy.max_retries == 0 and spec.timeout_seconds is None


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"type": "noop", "bogus": 1}, "bogus"),
        ({"type": "noop", "requirements": {"tpus": 2}}, "tpus"),
        ({"type": "noop", "retry_policy": {"retries": 2}}, "retries"),
        ({"type": "command", "config": {"argv": ["ls"], "shell": True}}, "shell"),
    ],
)
def test_unknown_fields_are_refused_by_name(obj: object, field: str) -> None:
    assert f"`{field}`" in refused(obj)


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({"type": "noop", "priority": "high"}, "$.priority"),
        ({"type": "noop", "priority": True}, "$.priority"),
        ({"type": "noop", "timeout_seconds": "60"}, "$.timeout_seconds"),
        ({"type": "noop", "timeout_seconds": 0}, "$.timeout_seconds"),
        ({"type": "noop", "retry_policy": {"max_retries": -1}}, "$.retry_policy.max_retries"),
        ({"type": "noop", "requirements": {"hardware": "gpu"}}, "$.requirements.hardware"),
        ({"type": "noop", "dependencies": ["a.b"]}, "$.dependencies[0]"),
        ({"type": "noop", "id": "a b"}, "$.id"),
        ({"type": "noop", "id": "a" * 65}, "$.id"),
        ({"type": "shell"}, "$.type"),
        ({"name": "no type"}, "type"),
        ({"type": "command", "config": {"argv": "ls -l"}}, "$.argv"),
        ({"type": "command", "config": {"argv": []}}, "$.argv"),
        ({"type": "command", "config": {"argv": ["ls"], "env": {"A": 1}}}, "$.env"),
    ],
)
def test_wrong_types_are_refused_with_the_field_path(obj: object, path: str) -> None:
    assert path in refused(obj)


def test_the_path_names_the_element_of_a_list() -> None:
    with pytest.raises(InvalidInput, match=r"\$\[1\]\.priority"):
        parse_specs(b'[{"type": "noop"}, {"type": "noop", "priority": "x"}]')


def test_the_seeds_benchmark_json_is_accepted_as_written_and_is_exclusive() -> None:
    [spec] = parse_specs(json.dumps(SEED_BENCHMARK))
    cfg = benchmark_config(spec)
    assert (cfg.model, cfg.batch_sizes, cfg.precision, cfg.iterations, cfg.warmup) == (
        "bert-base-uncased", (1, 2, 4, 8, 16), "fp16", 100, 1)
    assert spec.requirements.exclusive and spec.requirements.hardware == ("cuda",)
    shared = {**SEED_BENCHMARK, "config": {**SEED_BENCHMARK["config"], "shared": True}}
    assert not parse_specs(json.dumps(shared))[0].requirements.exclusive


@pytest.mark.parametrize(("config", "needle"), [
    ({"workload": "numpy-matmul", "callable": "m:f"}, "choose one of"),
    ({"workload": "gpt"}, "$.config"),
    ({"callable": "not a target"}, "`$.callable` (in `$.config`)"),
    ({"iterations": 10_000, "batch_sizes": [1, 2, 3]}, "iterations x batch sizes"),
    ({"batch_sizes": []}, "`$.batch_sizes`"),
    ({"precision": "fp8"}, "`$.precision`"),
    ({"command": ["bench", "a\x00b"]}, "NUL"),
    ({"argv": ["x"]}, "unknown field"),
])
def test_a_bad_benchmark_config_is_refused_naming_the_field(config, needle) -> None:  # type: ignore[no-untyped-def]
    assert needle in refused({"type": "benchmark", "config": config})


def test_a_test_task_names_node_ids_inside_its_root() -> None:
    ok = {"type": "test", "config": {"node_ids": ["tests/test_a.py::test_x[../a b]"],
                                     "args": ["-v", "tests"]}}
    assert parse_specs(msgspec.json.encode(ok))[0].type == "test"
    for bad in ["../etc/passwd::x", "/etc/passwd::x", "~/x.py::t", "a/../../b.py", "C:/x.py",
                "a\\..\\..\\b.py", "x\x00.py"]:
        cfg = {"node_ids": [bad]}
        assert "relative path inside the root" in refused({"type": "test", "config": cfg})
    assert "invalid test config" in refused({"type": "test", "config": {"node_ids": []}})
    assert "invalid test config" in refused({"type": "test", "config": {"argv": ["x"]}})
    assert "NUL" in refused({"type": "test", "config": {"node_ids": ["a.py"], "args": ["\x00"]}})
    # A plan's chunk instead of inline ids; never both, never neither.
    plan = {"plan": "a" * 64, "chunk": 3}
    assert parse_specs(msgspec.json.encode({"type": "test", "config": plan}))[0]
    assert "not both" in refused({"type": "test", "config": {**plan, "node_ids": ["a.py"]}})
    # Only pytest's own environment variables travel with a run.
    env = {"node_ids": ["a.py"], "env": {"PYTEST_ADDOPTS": "-x", "PYTHONPATH": "src"}}
    assert parse_specs(msgspec.json.encode({"type": "test", "config": env}))[0]
    assert "invalid test config" in refused(
        {"type": "test", "config": {"node_ids": ["a.py"], "env": {"LD_PRELOAD": "x.so"}}})


def test_noop_takes_no_config() -> None:
    assert refused({"type": "noop", "config": {"argv": ["ls"]}}) == "a 'noop' task takes no config"


def test_command_needs_argv() -> None:
    assert "argv" in refused({"type": "command"})


def test_argv_with_a_nul_byte_is_refused() -> None:
    assert "NUL" in refused({"type": "command", "config": {"argv": ["echo", "a\x00b"]}})


@pytest.mark.parametrize("task_id", ["abc\n", "a\nb", "\nabc"])
def test_an_id_with_a_newline_is_refused(task_id: str) -> None:
    assert "id" in refused({"type": "noop", "id": task_id})


def test_a_dependency_with_a_newline_is_refused() -> None:
    assert "dependency" in refused({"type": "noop", "dependencies": ["abc\n"]})


@pytest.mark.parametrize("data", [b"", b"{", b"null", b"42", b"[]", b'"noop"', b"\xff\xfe"])
def test_not_a_task_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_specs(data)


def test_an_oversized_spec_is_refused() -> None:
    big = {"type": "command", "config": {"argv": ["echo", "x" * MAX_SPEC_BYTES]}}
    assert "larger than" in refused(big)


def test_command_spec_builds_a_validated_command_task() -> None:
    spec = command_spec(["pytest", "tests/"], name="t", priority=3)
    assert spec.type == "command" and spec.priority == 3
    assert command_config(spec).argv == ("pytest", "tests/")


@pytest.mark.parametrize(
    ("argv", "fields", "needle"),
    [
        (["ls"], {"bogus": 1}, "`bogus`"),
        (["ls"], {"priority": "x"}, "$.priority"),
        ([], {}, "$.argv"),
        (["a\x00b"], {}, "NUL"),
    ],
)
def test_command_spec_refuses_bad_input(argv: list[str], fields: dict[str, object],
                                        needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        command_spec(argv, **fields)
    assert needle in str(info.value)


def test_validate_spec_checks_a_spec_built_in_code() -> None:
    with pytest.raises(InvalidInput, match="not supported"):
        validate_spec(TaskSpec(type="batch"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="config"):
        validate_spec(TaskSpec(type="command", config={"argv": "ls"}))
    assert validate_spec(TaskSpec(type="noop")) == TaskSpec(type="noop")
