"""The README's first hour, as a new user runs it (issue 13): `dtf submit -- ./run-suite.sh`
from the user's own project runs there, and a command that cannot start fails at once,
saying why, instead of being retried."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from agents.nats.connect import connect
from agents.wire.client import ApiClient
from dtf_core.spec import TaskSpec
from tests.dist import Dist, secure_stack

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


async def test_the_readme_remote_worker_recipe(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`dtf worker-key create gpu-1 > worker.key`, then on a second "host" (its own
    directory, no admin.jwt, no DTF_* settings) `dtf worker --server URL --id gpu-1
    --token-file worker.key` takes work. Given the admin's credential instead, a worker
    refuses to start."""
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path, workers=0) as dist:  # no local worker
        await _remote_worker(dist, tmp_path)


async def _remote_worker(dist: Dist, tmp_path: Path) -> None:
    rc, key = await dist.run(tmp_path, "worker-key", "create", "gpu-1", command=())
    assert rc == 0, key
    host2 = tmp_path / "host2"
    host2.mkdir()
    (host2 / "worker.key").write_text(key.splitlines()[0] + "\n")
    (host2 / "worker.key").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTF_")}
    env["DTF_CONTEXT"] = str(host2 / "no-context.json")

    def worker(credential: str, wid: str = "gpu-1") -> list[str]:
        return [sys.executable, "-m", "cli.main", "worker", "--server", dist.url,
                "--id", wid, "--token-file", credential]

    (host2 / "admin.jwt").write_text(dist.token)
    refused = await asyncio.create_subprocess_exec(
        *worker("admin.jwt"), cwd=host2, env=env, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(refused.communicate(), 60)
    assert refused.returncode == 2 and b"needs a worker credential" in err, err
    # no credential at all: the hint is the worker key's recipe, not the admin's credential
    bare = await asyncio.create_subprocess_exec(
        *worker("worker.key")[:-2], cwd=host2, env=env, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(bare.communicate(), 60)
    assert bare.returncode != 0 and b"dtf worker-key create ID" in err, err
    # gpu-1's key with another id: said at once, not a wait for an answer that cannot come
    other = await asyncio.create_subprocess_exec(
        *worker("worker.key", "gpu-2"), cwd=host2, env=env, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(other.communicate(), 60)
    assert other.returncode == 2 and b"dtf worker-key create gpu-2" in err, err
    (host2 / "admin.jwt").unlink()
    proc = await asyncio.create_subprocess_exec(
        *worker("worker.key"), cwd=host2, env=env, stderr=asyncio.subprocess.DEVNULL)
    try:
        rc, out = await dist.run(tmp_path, "--", "true", command=("submit",))
        task_id = out.strip()
        rc, out = await dist.run(tmp_path, task_id, "--timeout", "60", command=("wait",))
        assert rc == 0, out
        rc, out = await dist.run(tmp_path, task_id, "--json", command=("task",))
        assert json.loads(out)["worker_id"] == "gpu-1", out
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_command_from_another_host_runs_in_a_copy_of_its_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dtf submit --pack always` (auto: when a live worker is on another host) sends the
    directory's tree; a worker on another host (DTF_ALWAYS_UNPACK plays one) runs the
    command in a verified copy of it. Unpacked, a directory that is not on the worker's
    host fails the task at once, saying how to send it."""
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DTF_ALWAYS_UNPACK", "1")
    async with secure_stack(tmp_path, workers=1) as dist:
        project = tmp_path / "project"
        project.mkdir()
        (project / "data.txt").write_text("packed data\n")
        script = project / "run-suite.sh"
        script.write_text('#!/bin/sh\necho "$(cat data.txt) in $(pwd)"\n')
        script.chmod(0o755)
        rc, out = await dist.run(project, "--pack", "always", "--", "./run-suite.sh",
                                 command=("submit",))
        assert rc == 0, out
        task_id = out.strip()
        rc, out = await dist.run(project, task_id, "--timeout", "60", command=("wait",))
        assert rc == 0, out
        rc, out = await dist.run(project, task_id, command=("logs",))
        assert "packed data in " in out and str(project) not in out, out
        elsewhere = msgspec.convert({"type": "command", "config": {
            "argv": ["./run-suite.sh"], "cwd": "/no/such/dir", "host": "laptop-7"}},
            TaskSpec)
        nc = await connect(dist.url, "test", reconnect=False, credential=dist.token)
        try:
            (task_id,) = (await ApiClient(nc, credential=dist.token).submit([elsewhere])).ids
        finally:
            await nc.close()
        rc, out = await dist.run(project, task_id, "--timeout", "60", command=("wait",))
        rc, out = await dist.run(project, task_id, "--json", command=("task",))
        error = json.loads(out)["error"]
        assert "submitted on laptop-7" in error and "--pack always" in error, error


async def test_run_and_ci_take_a_token_file(dist: Dist, tmp_path: Path) -> None:
    """`dtf run pytest`, `dtf ci` and `pytest --dtf` take the credential by file, like every
    other client command (no DTF_TOKEN, no context here)."""
    root = dist.suite("tok", {"tests/test_one.py": "def test_one():\n    pass\n"})
    token = tmp_path / "token.txt"
    token.write_text(dist.token)
    no_token = {"DTF_TOKEN": "", "DTF_CONTEXT": str(tmp_path / "none.json")}
    for command, args in ((("run", "pytest"), ("--token-file", str(token), "tests")),
                          (("ci",), ("--token-file", str(token), "--", "tests"))):
        rc, out = await dist.run(root, *args, env=no_token, command=command)
        assert rc == 0 and "1 passed" in out, (command, out)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--dtf",
        "--dtf-token-file", str(token), "tests", cwd=root,
        env={**os.environ, **no_token, "DTF_SERVER": dist.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out_b, _ = await proc.communicate()
    assert proc.returncode == 0 and b"1 passed" in out_b, out_b.decode()
