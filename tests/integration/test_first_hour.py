"""The README's first hour, as a new user runs it (issue 13): `dtf submit -- ./run-suite.sh`
from the user's own project runs there, and a command that cannot start fails at once,
saying why, instead of being retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.pytest_dist.conftest import Dist, secure_stack

pytestmark = pytest.mark.anyio


@pytest.fixture
async def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dist]:
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path, workers=1) as d:
        yield d


async def test_a_command_runs_in_the_submitters_directory(dist: Dist, tmp_path: Path) -> None:
    project = tmp_path / "my-project"
    (project / "sub").mkdir(parents=True)
    script = project / "run-suite.sh"
    script.write_text('#!/bin/sh\necho "suite ran in $(pwd) with $1"\n')
    script.chmod(0o755)
    rc, out = await dist.run(project, "--", "./run-suite.sh", "--fast", command=("submit",))
    assert rc == 0, out
    task_id = out.strip()
    rc, out = await dist.run(project, task_id, "--timeout", "60", command=("wait",))
    assert rc == 0, out
    rc, out = await dist.run(project, task_id, command=("logs",))
    assert f"suite ran in {project} with --fast" in out, out
    rc, out = await dist.run(project, "--cwd", "sub", "--", "pwd", command=("submit",))
    task_id = out.strip()
    await dist.run(project, task_id, "--timeout", "60", command=("wait",))
    rc, out = await dist.run(project, task_id, command=("logs",))
    assert out.strip() == str(project / "sub"), out


async def test_a_command_that_cannot_start_fails_at_once(dist: Dist, tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "not-executable.sh").write_text("echo hi\n")
    for argv in (["./missing.sh"], ["./not-executable.sh"]):
        rc, out = await dist.run(project, "--retries", "2", "--", *argv, command=("submit",))
        assert rc == 0, out
        task_id = out.strip()
        rc, out = await dist.run(project, task_id, "--timeout", "60", command=("wait",))
        assert rc == 1, out
        rc, out = await dist.run(project, task_id, "--json", command=("task",))
        task = json.loads(out)
        assert task["status"] == "failed" and task["attempt"] == 1, task
        assert f"cannot start {argv[0]!r}" in task["error"], task
        assert "not retried" in task["error"] and str(project) in task["error"], task
