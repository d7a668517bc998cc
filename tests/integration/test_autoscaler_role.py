"""`dtf up --autoscale` on a secure stack gives its autoscaler a credential of its own
narrow role: with it the autoscaler still starts a local worker for queued work (with a
worker key of its own) and drains and stops it when the queue is empty; the same
credential is refused, as forbidden, everything else: submitting a task, a key for a
worker outside its group, draining a worker outside its group, issuing a token. NATS
itself (the auth callout's grant) refuses it a write outside its group's scale events."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.auth.server_auth import unverified_claims
from agents.nats.connect import FastClient, connect
from agents.nats.server import free_port
from tests.helpers import eventually, until
from tests.integration.test_cli_up import Up

PY = sys.executable


def workers(up: Up) -> dict[str, str]:
    """Every worker's state, and its scheduling where it is not open."""
    rows = json.loads(up.dtf("workers", "--all", "--json").stdout)
    return {r["id"]: r["state"] + ("" if r["scheduling"] == "open" else f" {r['scheduling']}")
            for r in rows}


def outside_worker(up: Up, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`dtf worker --id other-1` (no group), with a key an admin made for it."""
    key = tmp_path / "other-1.key"
    key.write_text(up.dtf("worker-key", "create", "other-1").stdout.strip())
    key.chmod(0o600)
    argv, env = up._cli(("worker", "--id", "other-1", "--slots", "1"), {
        "DTF_TOKEN_FILE": str(key), "DTF_CACHE_DIR": str(tmp_path / "cache"),
        "DTF_DETECT_BROWSER": "0"})
    with open(tmp_path / "other-1.log", "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out)


def refused(up: Up, cred: Path, *args: str) -> str:
    """Run a command with the autoscaler's credential; it must fail as forbidden."""
    out = up.dtf(*args, check=False, env={"DTF_TOKEN_FILE": str(cred)})
    assert out.returncode != 0, (args, out.stdout)
    assert "forbidden" in out.stderr, (args, out.stderr)
    return out.stderr


async def denied_publish(url: str, token: str, subject: str) -> bool:
    """Publish ``subject`` with ``token``: True once the server says it refused it."""
    nc = await connect(url, "probe", reconnect=False, credential=token)
    assert isinstance(nc, FastClient)
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()

        async def violation() -> bool:
            return nc.denied(subject)

        await until(violation, 5, f"the server to refuse a publish to {subject}")
        return True
    finally:
        await nc.close()


@pytest.mark.timeout(240)
def test_the_autoscaler_scales_with_its_own_role_and_is_refused_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the stack's processes and the task run here
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data, free_port(), "--workers", "0", "--no-http", "--autoscale", "local:0-1")
    other: subprocess.Popen[bytes] | None = None
    try:
        cred = data / "credentials" / "autoscaler.jwt"
        claims = unverified_claims(cred.read_text()) or {}
        assert (claims["role"], claims["wid"], claims["sub"]) == \
            ("autoscaler", "local", "agent-autoscaler")

        # scales up: work for its group gets a worker it started, with a key of its own
        task = up.dtf("submit", "--group", "local", "--", PY, "-c", "print('hi')").stdout.strip()
        up.dtf("wait", task)
        detail = json.loads(up.dtf("task", task, "--json").stdout)
        assert (detail["status"], detail["worker_id"]) == ("succeeded", "local-auto-1")
        key = data / "autoscale" / "credentials" / "local-auto-1.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_text().startswith("dtfk_")

        # a worker outside its group (none before: its free slots would serve the task)
        other = outside_worker(up, tmp_path)
        eventually(lambda: workers(up).get("other-1") == "alive", 60, "worker other-1 to run")

        # refused, as forbidden, with its reason: by the server's grant (it may publish
        # only what it uses) or by the api (its role, its group)
        tasks = len(json.loads(up.dtf("tasks", "--json").stdout))
        assert "dtf.q.workers" in refused(up, cred, "submit", "--", PY, "-c", "print('no')")
        assert len(json.loads(up.dtf("tasks", "--json").stdout)) == tasks
        assert "may not send dtf.cmd.auth.issue" in refused(
            up, cred, "token", "issue", "--role", "worker", "--worker-id", "local-auto-7")
        assert "creates keys only for its own workers" in refused(
            up, cred, "worker-key", "create", "other-2")
        assert "not in group 'local'" in refused(up, cred, "worker-manage", "drain", "other-1")
        assert workers(up)["other-1"] == "alive"  # not drained
        # what it may do passes with the same credential: the refusals are its scope's
        scaler = {"DTF_TOKEN_FILE": str(cred)}
        assert up.dtf("worker-key", "create", "local-auto-5", env=scaler).stdout.startswith(
            "dtfk_")
        up.dtf("worker-manage", "uncordon", "local-auto-1", env=scaler)  # open already: no change
        up.dtf("worker-manage", "drain", "other-1")  # an admin may
        # drained (its liveness is not the point: on a loaded machine recovery may have
        # declared it lost meanwhile, which a drain does not undo)
        assert workers(up)["other-1"].endswith(" draining")
        # the server's own grant: no event outside its group's scale events
        for subject in ("dtf.evt.task.t1.submitted", "dtf.evt.scale.gpu.scale_requested"):
            assert asyncio.run(denied_publish(up.url, cred.read_text(), subject))

        # scales down once the queue is empty (after its 30 s cooldown): drained, stopped
        eventually(lambda: workers(up).get("local-auto-1") == "stopped draining", 120,
                   "the autoscaled worker to be drained and stopped")
        explained = up.dtf("explain", task).stdout
        assert "The autoscaler of group 'local' scaled up from 0 to 1 worker(s)" in explained
    finally:
        if other is not None:
            other.terminate()
            other.wait(30)
        assert up.stop() == 0
    log = (data / "logs" / "autoscaler.log").read_text()
    assert "scale-up of local failed" not in log and "scale-down of local failed" not in log
