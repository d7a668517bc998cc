"""The compose topology from its files: `dtf init --tls-hosts ... --workers ... --enroll`
makes the secrets; three nats-server processes run deploy/nats/nats.conf (the one file
every container node runs, its name and routes from the environment) with only the files
compose mounts on a node; compose.yaml's control-1 (its command, environment and mounts)
makes the streams R3; its worker-1 runs a task. A Kubernetes worker pod (worker.yaml)
makes its own key and runs one too. Only what one host needs differs from the containers:
ports and paths (rendered here; the test fails if the files no longer have what it
renders) and the nodes' host names (localhost, also in the certificate)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from agents.auth.server_auth import unverified_claims
from agents.nats.server import free_port, port_open, server_binary
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nats" / "nats.conf"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
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


def check_init_files(secrets: Path) -> None:
    for made in [*NODE_FILES, "credentials/w1.jwt", "credentials/enroll.jwt"]:
        assert (secrets / made).stat().st_mode & 0o077 == 0 or made.endswith(".pem"), made
    cert = x509.load_pem_x509_certificate((secrets / "tls" / "server.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"nats-1", "nats-2", "nats-3", "localhost"} <= {str(n.value) for n in sans}
    w1 = unverified_claims((secrets / "credentials" / "w1.jwt").read_text())
    enroll = unverified_claims((secrets / "credentials" / "enroll.jwt").read_text())
    assert w1 and enroll and (w1["role"], w1["wid"], enroll["role"]) == (
        "worker", "w1", "enroller")


class Stack:
    """Three nodes from the container config and a control plane, as compose runs them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.secrets = tmp, tmp / "secrets"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        url = ",".join(f"tls://localhost:{c}" for c, _, _ in self.ports)
        self.env = {"DTF_SERVER": url, "DTF_TLS_CA": str(self.secrets / "tls" / "ca.pem"),
                    "DTF_STREAM_REPLICAS": "3"}
        self.admin = ["--token-file", str(self.secrets / "admin.jwt")]

    def start_nodes(self) -> None:
        routes = "[" + ", ".join(f"nats-route://localhost:{r}" for _, r, _ in self.ports) + "]"
        for i, node_ports in enumerate(self.ports, start=1):
            etc = self.tmp / f"node-{i}"
            for name in NODE_FILES:  # only what compose mounts on a node
                (etc / "secrets" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.secrets / name, etc / "secrets" / name)
            conf = etc / "config" / "nats.conf"
            conf.parent.mkdir()
            conf.write_text(render(CONF.read_text(), etc, self.tmp / f"data-{i}", node_ports))
            self.spawn(f"nats-{i}", [server_binary(), "--config", str(conf)],
                       {"NATS_NAME": f"nats-{i}", "NATS_ROUTES": routes})
        for (client, _, _), proc in zip(self.ports, self.procs, strict=True):
            eventually(lambda c=client, p=proc: port_open("127.0.0.1", c)  # type: ignore[misc]
                       or p.poll() is not None, 15, "the nodes to listen")
            assert proc.poll() is None, (self.tmp / "nats-1.log").read_text()[-2000:]
        eventually(lambda: any(meta_ready(m) for _, _, m in self.ports), 20,
                   "a JetStream meta leader with both peers current")

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs.append(subprocess.Popen(argv, cwd=self.tmp, stdout=log, stderr=log,
                                           env={**os.environ, "PYTHONPATH": str(ROOT), **env}))

    def agent(self, name: str, *args: str, env: dict[str, str]) -> None:
        self.spawn(name, [sys.executable, "-m", "cli.main", *args], {**self.env, **env})

    def compose_service(self, name: str) -> None:
        """A dtf service of compose.yaml, with its command, environment, secrets and
        volumes, under a directory of its own that stands for the container's /."""
        doc = yaml.safe_load(COMPOSE.read_text())
        svc, root = doc["services"][name], self.tmp / name

        def here(value: str) -> str:
            return f"{root}{value}" if value.startswith("/") else value

        for ref in svc.get("secrets", []):
            source = doc["secrets"][ref["source"]]["file"].split("}/", 1)[1]
            Path(here(ref["target"])).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.secrets / source, here(ref["target"]))
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("${DTF_SECRETS}/"):
                shutil.copytree(self.secrets / source.split("}/", 1)[1], here(target))
        env = {k: here(str(v)) for k, v in svc["environment"].items()}
        self.agent(name, *map(here, svc["command"]),
                   env={**env, "DTF_SERVER": self.env["DTF_SERVER"]})  # not nats-1...

    def dtf(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return dtf(*args, cwd=self.tmp, env=self.env, check=check)

    def runs_a_task(self) -> str:
        """The worker that ran a task, once it succeeded."""
        sent = self.dtf("submit", *self.admin, "--json", "--", sys.executable, "-c",
                        "print('hi')")
        task_id = json.loads(sent.stdout)["id"]
        self.dtf("wait", *self.admin, "--timeout", "60", task_id)
        worker: str = json.loads(self.dtf("task", *self.admin, "--json", task_id).stdout)[
            "worker_id"]
        return worker

    def stop(self, procs: list[subprocess.Popen[bytes]] | None = None) -> None:
        for proc in reversed(procs or self.procs):
            proc.terminate()
        for proc in procs or self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("stack"))
    dtf("init", "--out", str(stack.secrets), "--tls-hosts", "nats-1,nats-2,nats-3",
        "--workers", "w1", "--enroll", cwd=stack.tmp)
    check_init_files(stack.secrets)
    try:
        stack.start_nodes()
        stack.compose_service("control-1")
        eventually(lambda: stack.dtf("status", *stack.admin, check=False).returncode == 0, 60,
                   "the control plane")
        yield stack
    finally:
        stack.stop()


def test_a_compose_worker_runs_a_task_on_r3_streams(stack: Stack) -> None:
    stack.compose_service("worker-1")
    assert stack.runs_a_task() == "w1"
    stack.stop(stack.procs[-1:])
    monitors = [m for _, _, m in stack.ports]
    eventually(lambda: set(stream_replicas(monitors).values()) == {3}, 15,
               "every stream on three nodes, each current")
    assert {"DTF_EVENTS", "DTF_LOGS", "DTF_HEARTBEATS"} <= set(stream_replicas(monitors))


def k8s_paths(text: str, root: Path) -> str:
    """A pod's paths (its volumes and /tmp) under ``root``."""
    return re.sub(r"(?<![\w/.-])/(secrets|etc/dtf|tmp)/", lambda m: f"{root}{m.group(0)}",
                  text)


def test_a_kubernetes_worker_pod_makes_its_own_key_and_runs_a_task(stack: Stack) -> None:
    """worker.yaml's two containers as the kubelet runs them: the enroll script over a
    Secret volume (symlinks into ..data, as the kubelet lays it out), then the worker."""
    [pod] = [d["spec"]["template"]["spec"] for d in
             yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "worker.yaml").read_text())]
    [enroll], [worker] = pod["initContainers"], pod["containers"]
    root = stack.tmp / "pod"
    data = root / "secrets" / "..data"
    data.mkdir(parents=True)
    for item in pod["volumes"][1]["secret"]["items"]:
        shutil.copy(stack.secrets / {"ca.pem": "tls/ca.pem"}.get(item["key"],
                                                                  "credentials/enroll.jwt"),
                    data / item["path"])
        (data / item["path"]).chmod(0o440)
        (root / "secrets" / item["path"]).symlink_to(f"..data/{item['path']}")
    for sub in ("etc/dtf", "tmp", "bin"):
        (root / sub).mkdir(parents=True)
    shim = root / "bin" / "dtf"  # the image's dtf: this checkout's
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m cli.main \"$@\"\n")
    shim.chmod(0o755)
    pod_name = "dtf-worker-7c9d8b6f5-x2k4q"
    env = {"POD_NAME": pod_name, "PATH": f"{root / 'bin'}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "DTF_SERVER": stack.env["DTF_SERVER"],
           "DTF_TLS_CA": k8s_paths("/etc/dtf/ca.pem", root)}
    assert enroll["command"] == ["sh", "-c"]
    script = subprocess.run(["sh", "-c", k8s_paths(enroll["args"][0], root)], cwd=stack.tmp,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60)
    assert script.returncode == 0, script.stderr
    key = root / "etc" / "dtf" / "worker.key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.read_text().startswith("dtfk_")
    assert not (root / "tmp" / "enroll.jwt").exists()

    enroller = ["--token-file", str(stack.secrets / "credentials" / "enroll.jwt")]
    for wid in (pod_name, "w1"):  # it has a key now; w1 registered: neither is new
        again = stack.dtf("worker-key", "create", wid, *enroller, check=False)
        assert again.returncode != 0 and "new worker ids only" in again.stderr, again.stderr
    for other in (["status"], ["token", "issue", "--role", "admin"]):  # nothing else
        refused = stack.dtf(*other, *enroller, check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), (
            other, refused.stderr)

    args = [k8s_paths(a.replace("$(POD_NAME)", pod_name), root) for a in worker["args"]]
    stack.agent("pod-worker", *args, env={"DTF_TLS_CA": env["DTF_TLS_CA"]})
    assert stack.runs_a_task() == pod_name
