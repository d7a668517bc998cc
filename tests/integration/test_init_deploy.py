"""A stack on several hosts, as docs/deploy.md sets one up: `dtf init` makes the secrets; a
NATS node includes the auth block; the control plane and the projector run as their own
processes with their own credentials (what the systemd units run); the operator makes a
worker key; the worker joins; a command task runs. Secrets of another `dtf init` are
refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.nats.server import NatsServer, free_port
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def dtf(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, in the test's directory (not the checkout)."""
    out = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                         text=True, timeout=60, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_a_stack_from_dtf_init_runs_a_task(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    made = dtf("init", "--out", str(secrets), cwd=tmp_path)
    assert "nats-auth.conf" in made.stdout
    again = dtf("init", "--out", str(secrets), cwd=tmp_path, check=False)
    assert again.returncode == 2  # not over secrets made before
    conf = tmp_path / "node.conf"
    conf.write_text((ROOT / "nats.conf").read_text() + "\n"
                    + (secrets / "nats-auth.conf").read_text())
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port(), conf=conf)
    server.start()
    url = server.url
    procs: list[subprocess.Popen[bytes]] = []

    def agent(name: str, *args: str, token: Path) -> None:
        log = (tmp_path / f"{name}.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args, "--server", url], cwd=tmp_path,
            env={**os.environ, "DTF_TOKEN_FILE": str(token), "PYTHONPATH": str(ROOT)},
            stdout=log, stderr=log))

    admin = ["--server", url, "--token-file", str(secrets / "admin.jwt")]
    try:
        agent("control", "agent", "control", "--keys", str(secrets / "keys"),
              token=secrets / "credentials" / "control.jwt")
        agent("projector", "agent", "projector", "--db", str(tmp_path / "dtf.duckdb"),
              token=secrets / "credentials" / "projector.jwt")
        eventually(lambda: dtf("status", *admin, cwd=tmp_path, check=False).returncode == 0,
                   60, "the control plane to answer the operator")
        made_key = dtf("worker-key", "create", "w1", *admin, cwd=tmp_path)
        key = made_key.stdout.strip().splitlines()[-1]
        key_file = tmp_path / "worker.key"
        key_file.write_text(key)
        key_file.chmod(0o600)
        agent("worker", "worker", "--id", "w1", "--token-file", str(key_file), token=key_file)
        sent = dtf("submit", *admin, "--json", "--", sys.executable, "-c", "print('hi')",
                   cwd=tmp_path)
        task_id = json.loads(sent.stdout)["id"]
        assert dtf("wait", *admin, task_id, cwd=tmp_path).returncode == 0
        other = tmp_path / "other"
        dtf("init", "--out", str(other), cwd=tmp_path)
        refused = dtf("status", "--server", url, "--token-file", str(other / "admin.jwt"),
                      cwd=tmp_path, check=False)
        assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
