"""Settings come from one place: the command line, then DTF_* variables, then ./dtf.toml
or [tool.dtf] in ./pyproject.toml, then the user's context, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.host.settings import DEFAULT_SERVER, load
from dtf_core.errors import InvalidInput


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DTF_CONTEXT": str(tmp_path / "no-context.json"), **extra}


def test_defaults_without_any_source(tmp_path: Path) -> None:
    s = load(env(tmp_path), directory=tmp_path)
    assert (s.server, s.heartbeat_interval, s.quotas, s.detect_browser) == (
        DEFAULT_SERVER, 1.0, {}, True)


def test_a_dtf_toml_sets_what_the_environment_does_not(tmp_path: Path) -> None:
    (tmp_path / "dtf.toml").write_text(
        'server = "nats://files:4222"\nheartbeat_interval = 0.5\nquotas = {alice = 4}\n'
        "detect_browser = false\n")
    s = load(env(tmp_path, DTF_HEARTBEAT_INTERVAL="2"), directory=tmp_path)
    assert (s.server, s.heartbeat_interval, s.quotas, s.detect_browser) == (
        "nats://files:4222", 2.0, {"alice": 4}, False)
    assert load(env(tmp_path), server="nats://cli:1", directory=tmp_path).server == \
        "nats://cli:1"


def test_pyproject_tool_dtf_is_read_when_there_is_no_dtf_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.dtf]\n'
                                             'policy = "fifo"\n\n[tool.dtf.ci]\nreruns = 2\n')
    assert load(env(tmp_path), directory=tmp_path).policy == "fifo"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load(env(tmp_path), directory=tmp_path).policy == "default"


@pytest.mark.parametrize("text, said", [
    ('token = "secret"\n', "unknown setting token"),
    ("heartbeat_interval = [\n", "cannot read settings"),
    ('heartbeat_misses = "many"\n', "DTF_HEARTBEAT_MISSES='many' is not a number"),
])
def test_a_bad_settings_file_is_a_clear_error(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "dtf.toml").write_text(text)
    with pytest.raises(InvalidInput, match=said):
        load(env(tmp_path), directory=tmp_path)


def test_a_worker_s_key_dir_here_does_not_hide_the_stack_of_the_context(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.host.settings import write_context

    stack = tmp_path / "stack" / ".dtf"
    stack.mkdir(parents=True)
    here = tmp_path / "project"
    (here / ".dtf" / "worker-keys").mkdir(parents=True)  # what `dtf worker` leaves here
    monkeypatch.chdir(here)
    ctx = {"DTF_CONTEXT": str(tmp_path / "context.json")}
    write_context("nats://127.0.0.1:4333", stack, ctx)
    assert load(ctx, directory=here).data_dir == str(stack.resolve())
    (here / ".dtf" / "admin.jwt").write_text("x")  # a stack was started here: it wins
    assert load(ctx, directory=here).data_dir == ".dtf"


def test_stream_replicas_come_from_the_environment_within_jetstream_s_range(
        tmp_path: Path) -> None:
    assert load(env(tmp_path), directory=tmp_path).stream_replicas == 1
    three = env(tmp_path, DTF_STREAM_REPLICAS="3")
    assert load(three, directory=tmp_path).stream_replicas == 3
    for bad in ("0", "6", "three"):
        with pytest.raises(InvalidInput, match="DTF_STREAM_REPLICAS"):
            load(env(tmp_path, DTF_STREAM_REPLICAS=bad), directory=tmp_path)
