"""The compose topology from its files: `dtf init --tls-hosts ... --workers ...` makes the
secrets; three nats-server processes run deploy/nats/nats.conf (the one file every
container node runs, its name and routes from the environment) with only the files
compose mounts on a node; a control plane with DTF_STREAM_REPLICAS=3 makes the streams R3;
a worker with the token `dtf init --workers` made runs a task. Only what one host needs
differs from the containers: the ports and paths (the test renders them, and fails if the
file no longer has the lines it renders)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from agents.auth.server_auth import unverified_claims
from agents.nats.server import free_port, port_open, server_binary
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nats" / "nats.conf"
NODE_FILES = ["nats-auth.conf", "tls/ca.pem", "tls/server.pem", "tls/server.key"]


def dtf(*args: str, cwd: Path, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                         text=True, timeout=60, cwd=cwd,
                         env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})
    if check:
        assert out.returncode == 0, out.stderr
    return out


def render(text: str, etc: Path, store: Path, ports: tuple[int, int, int]) -> str:
    """The container's file on this host: its ports and paths, nothing else."""
    client, route, monitor = ports
    for old, new in [("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{client}"),
                     ("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{route}"),
                     ("http: 0.0.0.0:8222", f"http: 127.0.0.1:{monitor}"),
                     ("store_dir: /data", f'store_dir: "{store}"'),
                     ("/etc/nats/secrets/", f"{etc}/secrets/")]:
        assert old in text, f"{CONF} no longer has {old!r}"
        text = text.replace(old, new)
    return text


def monitor_json(port: int, path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2) as reply:
            data: dict[str, Any] = json.load(reply)
            return data
    except OSError:
        return {}


def meta_ready(port: int) -> bool:
    meta = monitor_json(port, "jsz").get("meta_cluster") or {}
    return bool(meta.get("leader")) and \
        len([r for r in meta.get("replicas") or [] if r.get("current")]) == 2


def stream_replicas(monitors: list[int]) -> dict[str, int]:
    """Each stream's replicas as its leader reports them: itself and its current peers
    (another node's view of who is current is not the leader's)."""
    out = {}
    for port in monitors:
        jsz = monitor_json(port, "jsz?accounts=true&streams=true&config=true")
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                cluster = stream.get("cluster") or {}
                if cluster.get("leader_since"):  # only the leader's view has it
                    peers = cluster.get("replicas") or []
                    out[stream["name"]] = 1 + len([p for p in peers if p.get("current")])
    return out


def test_dtf_init_refuses_what_would_not_work(tmp_path: Path) -> None:
    for args, says in [(["--tls-hosts", "nats_1"], "host name"),
                       (["--workers", "w1,w1"], "twice"),
                       (["--workers", "control"], "other ids"),
                       (["--workers", "a.b"], "worker id")]:
        out = dtf("init", "--out", str(tmp_path / "x"), *args, cwd=tmp_path, check=False)
        assert out.returncode == 2 and says in out.stderr, out.stderr
    dtf("init", "--out", str(tmp_path / "y"), "--tls-hosts", "nats-1", cwd=tmp_path)
    token = (tmp_path / "y" / "credentials" / "control.jwt").read_text()
    again = dtf("init", "--out", str(tmp_path / "y"), "--force", "--tls-hosts", "nats-9",
                cwd=tmp_path, check=False)
    assert again.returncode == 2 and "does not name nats-9" in again.stderr, again.stderr
    assert (tmp_path / "y" / "credentials" / "control.jwt").read_text() == token  # as it was


def test_three_nodes_from_the_container_config_run_a_stack(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    dtf("init", "--out", str(secrets), "--tls-hosts", "nats-1,nats-2,nats-3",
        "--workers", "w1", "--enroll", cwd=tmp_path)
    for made in [*NODE_FILES, "credentials/w1.jwt", "credentials/enroll.jwt"]:
        assert (secrets / made).stat().st_mode & 0o077 == 0 or made.endswith(".pem"), made
    cert = x509.load_pem_x509_certificate((secrets / "tls" / "server.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"nats-1", "nats-2", "nats-3", "localhost"} <= {str(n.value) for n in sans}
    w1 = unverified_claims((secrets / "credentials" / "w1.jwt").read_text())
    enroll = unverified_claims((secrets / "credentials" / "enroll.jwt").read_text())
    assert w1 and enroll and (w1["role"], w1["wid"], enroll["role"]) == ("worker", "w1", "admin")

    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    routes = "[" + ", ".join(f"nats-route://localhost:{r}" for _, r, _ in ports) + "]"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, node_ports in enumerate(ports, start=1):
            etc = tmp_path / f"node-{i}"
            for name in NODE_FILES:  # only what compose mounts on a node
                (etc / "secrets" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(secrets / name, etc / "secrets" / name)
            conf = etc / "config" / "nats.conf"
            conf.parent.mkdir()
            conf.write_text(render(CONF.read_text(), etc, tmp_path / f"data-{i}", node_ports))
            log = (tmp_path / f"nats-{i}.log").open("wb")
            procs.append(subprocess.Popen(
                [server_binary(), "--config", str(conf)], stdout=log, stderr=log,
                env={**os.environ, "NATS_NAME": f"nats-{i}", "NATS_ROUTES": routes}))
        for (client, _, _), proc in zip(ports, procs, strict=True):
            eventually(lambda c=client, p=proc: port_open("127.0.0.1", c)  # type: ignore[misc]
                       or p.poll() is not None, 15, "the nodes to listen")
            assert proc.poll() is None, (tmp_path / "nats-1.log").read_text()[-2000:]
        eventually(lambda: any(meta_ready(m) for _, _, m in ports), 20,
                   "a JetStream meta leader with both peers current")

        url = ",".join(f"tls://localhost:{c}" for c, _, _ in ports)
        env = {"DTF_SERVER": url, "DTF_TLS_CA": str(secrets / "tls" / "ca.pem"),
               "DTF_STREAM_REPLICAS": "3"}

        def agent(name: str, *args: str, token: str) -> None:
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args], cwd=tmp_path, stdout=log,
                stderr=log, env={**os.environ, **env, "PYTHONPATH": str(ROOT),
                                 "DTF_TOKEN_FILE": str(secrets / "credentials" / token)}))

        admin = ["--token-file", str(secrets / "admin.jwt")]
        agent("control", "agent", "control", "--keys", str(secrets / "keys"),
              token="control.jwt")
        eventually(lambda: dtf("status", *admin, cwd=tmp_path, env=env,
                               check=False).returncode == 0, 60, "the control plane")
        agent("worker", "worker", "--id", "w1", "--token-file",
              str(secrets / "credentials" / "w1.jwt"), token="w1.jwt")
        sent = dtf("submit", *admin, "--json", "--", sys.executable, "-c", "print('hi')",
                   cwd=tmp_path, env=env)
        task_id = json.loads(sent.stdout)["id"]
        assert dtf("wait", *admin, "--timeout", "60", task_id, cwd=tmp_path, env=env)
        monitors = [m for _, _, m in ports]
        eventually(lambda: set(stream_replicas(monitors).values()) == {3}, 15,
                   "every stream on three nodes, each current")
        assert {"DTF_EVENTS", "DTF_LOGS", "DTF_HEARTBEATS"} <= set(stream_replicas(monitors))
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
