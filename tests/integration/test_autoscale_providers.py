"""The autoscaler's other providers: kubernetes against a local fake API server (the request
it sends, byte for byte), docker where a daemon answers; and `--autoscale` refused when it
cannot mean anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from agents.host.scale_docker import DockerProvider
from agents.host.scale_kube import KubernetesProvider
from dtf_core.errors import DTFError, InvalidInput
from tests.fake_http import FakeApi, Recorded, serving

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
SCALE = "/apis/apps/v1/namespaces/ci/deployments/pool-a/scale"


@contextmanager
def fake_kube(replicas: int, status: int = 200) -> Iterator[FakeApi]:
    """The scale subresource of one Deployment: GET reads it, PATCH merges into it."""
    api = FakeApi(url="")
    state = {"replicas": replicas}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"kind": "Scale", "spec": state}).encode())

        def _record(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.requests.append(Recorded(method, self.path,
                                         {k.lower(): v for k, v in self.headers.items()},
                                         json.loads(raw) if raw else None))

        def do_GET(self) -> None:
            self._record("GET")
            self._answer()

        def do_PATCH(self) -> None:
            self._record("PATCH")
            if status == 200 and self.path == SCALE:
                state["replicas"] = api.requests[-1].body["spec"]["replicas"]
            self._answer()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(api, Handler):
        yield api


def provider(url: str, tmp_path: Path) -> KubernetesProvider:
    token = tmp_path / "token"
    token.write_text("sa-token-123\n")
    return KubernetesProvider(api=url, namespace="ci", deployment="pool-a", token_file=token)


async def test_kubernetes_patches_the_deployments_replicas(tmp_path: Path) -> None:
    with fake_kube(replicas=1) as api:
        p = provider(api.url, tmp_path)
        assert await p.start(["", ""]) == ["", ""]  # 1 -> 3
        await p.stop(["w-a"])  # 3 -> 2
    get, up, down = api.requests
    assert (get.method, get.path) == ("GET", SCALE)
    assert get.headers["authorization"] == "Bearer sa-token-123"
    for patch, replicas in ((up, 3), (down, 2)):
        assert (patch.method, patch.path) == ("PATCH", SCALE)
        assert patch.headers["content-type"] == "application/merge-patch+json"
        assert patch.headers["authorization"] == "Bearer sa-token-123"
        assert patch.body == {"spec": {"replicas": replicas}}


async def test_kubernetes_refusal_is_an_error_with_its_status(tmp_path: Path) -> None:
    with fake_kube(replicas=1, status=403) as api:
        with pytest.raises(DTFError, match="HTTP 403"):
            await provider(api.url, tmp_path).start(["x"])


@pytest.mark.parametrize(("namespace", "deployment", "api"), [
    ("a/b", "d", "https://k"), ("ci", "Pool_A", "https://k"), ("ci", "d", "file:///etc")])
def test_kubernetes_names_and_url_are_validated(tmp_path: Path, namespace: str,
                                                deployment: str, api: str) -> None:
    with pytest.raises(InvalidInput):
        KubernetesProvider(api=api, namespace=namespace, deployment=deployment,
                           token_file=tmp_path / "t")


def _docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.mark.skipif(not _docker_daemon(), reason="no Docker daemon reachable")
async def test_docker_starts_and_stops_a_container(tmp_path: Path) -> None:
    async def no_token(worker_id: str) -> str | None:
        return None

    p = DockerProvider(image="busybox", server="nats://127.0.0.1:1", group="dock",
                       issue_token=no_token)
    p.run_argv = lambda wid, with_token: ["run", "-d", "--rm", "--name", f"dtf-{wid}",  # type: ignore[method-assign]
                                          "busybox", "sleep", "60"]
    assert await p.start(["dock-auto-1"]) == ["dock-auto-1"]
    await p.close()
    assert p.containers == set()


def test_docker_argv_passes_the_token_by_name_only() -> None:
    async def no_token(worker_id: str) -> str | None:
        return None

    argv = DockerProvider(image="img", server="nats://h:4222", group="g",
                          issue_token=no_token, slots=2).run_argv("g-auto-1", True)
    assert argv[argv.index("-e") + 1] == "DTF_TOKEN"  # the value comes from the environment
    assert argv[argv.index("img"):] == ["img", "dtf", "worker", "--id", "g-auto-1", "--group",
                                        "g", "--server", "nats://h:4222", "--slots", "2"]


@pytest.mark.parametrize(("argv", "says"), [
    (["up", "--autoscale", "local:4-2"], "PROVIDER:MIN-MAX"),
    (["up", "--autoscale", "local"], "PROVIDER:MIN-MAX"),
    (["up", "--autoscale", "kubernetes:0-3"], "dtf up --autoscale takes local"),
    (["up", "--autoscale", "local:0-2", "--task-user", "nobody"], "not supported yet"),
    (["agent", "autoscaler"], "needs --autoscale"),
    (["agent", "autoscaler", "--autoscale", "ec2:0-1"], "PROVIDER:MIN-MAX"),
])
def test_bad_autoscale_is_refused_with_its_reason(tmp_path: Path, argv: list[str],
                                                  says: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DTF_DATA_DIR": str(tmp_path / "d")}
    out = subprocess.run([sys.executable, "-m", "cli.main", *argv, "--server",
                          "nats://127.0.0.1:1"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr


@pytest.mark.timeout(150)
def test_dtf_up_autoscale_starts_a_credentialed_worker_for_queued_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dtf up --autoscale local:0-1` on a secure stack: no worker until work comes, then
    one with a worker credential of its own that runs it; explain tells why it came."""
    from agents.nats.server import free_port
    from tests.integration.test_cli_up import Up

    monkeypatch.chdir(tmp_path)  # the stack's processes and the task run here
    data = tmp_path / "data"
    data.mkdir()
    up = Up(data, free_port(), "--workers", "0", "--no-http", "--autoscale", "local:0-1")
    try:
        assert json.loads(up.dtf("workers", "--json").stdout) == []
        task = up.dtf("submit", "--", sys.executable, "-c", "print('hi')").stdout.strip()
        up.dtf("wait", task)
        detail = json.loads(up.dtf("task", task, "--json").stdout)
        assert (detail["status"], detail["worker_id"]) == ("succeeded", "local-auto-1")
        cred = data / "autoscale" / "credentials" / "local-auto-1.key"
        assert cred.stat().st_mode & 0o777 == 0o600
        explained = up.dtf("explain", task).stdout
        assert "The autoscaler of group 'local' scaled up from 0 to 1 worker(s)" in explained
        simulated = up.dtf("simulate", "--extra-workers", "2").stdout
        assert "policy default +2 workers" in simulated
    finally:
        assert up.stop() == 0
    assert "worker local-auto-1 ready" in (data / "logs" / "local-auto-1.log").read_text()
