"""deploy/compose/compose.yaml and the Kubernetes manifests (deploy/kustomization.yaml,
deploy/kubernetes/): every `dtf` command line they run is one dtf's parser accepts, and
what they reference is there: services, volumes, secrets and their keys, made by the
commands docs/deploy.md gives (run here, for real). Where a tool here can check a file
offline (`docker compose config`, `kubectl kustomize`) it does; where it is missing or
needs a cluster, the test says so and skips."""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.args import parser
from cli.init_cmd import init_cmd
from tests.unit import deploy_checks as dc

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
DOCS = ROOT / "docs" / "deploy.md"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def manifests() -> list[dict[str, Any]]:
    files = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    return [d for f in files for d in yaml.safe_load_all((DEPLOY / f).read_text()) if d]


def doc_commands(section: str) -> list[list[str]]:
    """The command lines of the first code block under ``## section`` in docs/deploy.md."""
    text = DOCS.read_text().split(f"\n## {section}\n", 1)[1]
    block = text.split("```", 2)[1].split("\n", 1)[1]
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def run_init(argv: list[str], out: Path) -> Path:
    """`dtf init` as docs/deploy.md runs it, into ``out``."""
    assert dc.dtf_args_error(argv) is None, dc.dtf_args_error(argv)
    args = list(argv[1:])
    args[args.index("--out") + 1] = str(out)
    assert init_cmd(parser().parse_args(args)) == 0
    return out


def init_line(section: str) -> list[str]:
    [line] = [c for c in doc_commands(section) if c[:2] == ["dtf", "init"]]
    return line


# --- compose -------------------------------------------------------------------------

def test_compose_runs_what_the_issue_asks_for() -> None:
    services = compose()["services"]
    commands = [" ".join(s.get("command", [])) for s in services.values()]
    assert sum(c.startswith("--config") for c in commands) == 3  # three NATS nodes
    assert sum(c.startswith("agent control") for c in commands) == 2
    assert sum(c.startswith("agent projector") for c in commands) == 1
    assert sum(c.startswith("agent http") for c in commands) == 1
    assert sum(c.startswith("worker") for c in commands) == 2


def test_compose_has_no_problem() -> None:
    assert dc.compose_problems(compose()) == []


def test_compose_mounts_what_the_documented_dtf_init_makes(tmp_path: Path) -> None:
    secrets = run_init(init_line("Compose"), tmp_path / "secrets")
    doc = compose()
    assert dc.compose_host_files(doc, COMPOSE.parent, {"DTF_SECRETS": str(secrets)}) == []
    (secrets / "credentials" / "w2.jwt").unlink()  # the check can fail
    assert dc.compose_host_files(doc, COMPOSE.parent, {"DTF_SECRETS": str(secrets)}) == [
        f"{secrets}/credentials/w2.jwt"]


def broken_compose() -> list[dict[str, Any]]:
    out = []
    for svc, key, value in [("worker-1", "command", ["worker", "--no-such-flag"]),
                            ("control-1", "depends_on", ["nats-4"]),
                            ("projector", "volumes", ["nowhere:/var/lib/dtf"]),
                            ("http", "secrets", [{"source": "nope", "target": "/x"}]),
                            ("http", "environment", {"DTF_TOKEN_FILE": "/etc/dtf/other.jwt"})]:
        doc = copy.deepcopy(compose())
        doc["services"][svc][key] = value
        out.append(doc)
    return out


@pytest.mark.parametrize("doc", broken_compose(), ids=["flag", "depends_on", "volume",
                                                        "secret", "unmounted-token"])
def test_the_compose_check_refuses_a_broken_file(doc: dict[str, Any]) -> None:
    assert dc.compose_problems(doc) != []


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed here")
def test_docker_compose_reads_the_file(tmp_path: Path) -> None:
    version = subprocess.run(["docker", "compose", "version"], capture_output=True,
                             text=True, timeout=30)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here: "
                    f"{(version.stderr or version.stdout).strip()[:200]}")
    secrets = run_init(init_line("Compose"), tmp_path / "secrets")
    out = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DTF_SECRETS": str(secrets)})
    assert out.returncode == 0, out.stderr


# --- Kubernetes ----------------------------------------------------------------------

def test_the_manifests_run_what_the_issue_asks_for() -> None:
    docs = manifests()
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    nats = kinds[("StatefulSet", "nats")]
    assert nats["spec"]["replicas"] == 3 and nats["spec"]["volumeClaimTemplates"]
    assert kinds[("Deployment", "dtf-control")]["spec"]["replicas"] == 2
    assert ("Deployment", "dtf-projector") in kinds and ("Deployment", "dtf-http") in kinds
    worker = kinds[("Deployment", "dtf-worker")]  # what the autoscaler scales
    assert worker["metadata"]["labels"]["app.kubernetes.io/name"] == "dtf-worker"
    gpu = kinds[("DaemonSet", "dtf-worker-gpu")]["spec"]["template"]["spec"]
    [limits] = [c["resources"]["limits"] for c in gpu["containers"]]
    assert limits["nvidia.com/gpu"] >= 1 and gpu["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    for _, pod in dc.pod_specs(docs):  # every agent makes R3 streams
        for c in pod["containers"]:
            if c["args"][:1] == ["agent"] and c["args"][1] != "http":
                assert {"name": "DTF_STREAM_REPLICAS", "value": "3"} in c["env"]


def test_every_workload_has_no_problem() -> None:
    problems = [p for doc, pod in dc.pod_specs(manifests())
                for p in dc.workload_problems(doc, pod)]
    assert problems == []


def test_each_command_of_a_workload_is_checked() -> None:
    commands = [argv for _, pod in dc.pod_specs(manifests()) for c in dc.containers(pod)
                for argv in dc.container_commands(c)]
    assert len(commands) == 7  # 3 agents, 2 kinds of worker, 2 pods' worker-key create
    assert ["dtf", "worker-key", "create", "$POD_NAME", "--token-file",
            "/tmp/enroll.jwt"] in commands


def broken_workloads() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for edit in ("selector", "mount", "args", "script", "variable", "item"):
        docs = manifests()
        doc, pod = next((d, p) for d, p in dc.pod_specs(docs)
                        if d["metadata"]["name"] == "dtf-worker")
        init, main_c = pod["initContainers"][0], pod["containers"][0]
        if edit == "selector":
            doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
        elif edit == "mount":
            main_c["volumeMounts"].append({"name": "missing", "mountPath": "/m"})
        elif edit == "args":
            main_c["args"] = ["worker", "--slotz", "2"]
        elif edit == "script":
            init["args"] = [init["args"][0].replace("worker-key create", "worker-key make")]
        elif edit == "variable":
            main_c["env"] = [e for e in main_c["env"] if e["name"] != "POD_NAME"]
        else:
            init["args"] = [init["args"][0].replace("/secrets/enroll.jwt", "/secrets/a.jwt")]
        out.append((doc, pod))
    return out


@pytest.mark.parametrize("workload", broken_workloads(),
                         ids=["selector", "mount", "args", "script", "variable", "item"])
def test_the_workload_check_refuses_a_broken_one(
        workload: tuple[dict[str, Any], dict[str, Any]]) -> None:
    assert dc.workload_problems(*workload) != []


def documented_secrets(tmp_path: Path) -> dict[str, set[str]]:
    """Each Secret docs/deploy.md makes, and its keys, from a real `dtf init` directory:
    as `kubectl create secret generic NAME --from-file=PATH` does (a directory: its
    regular files)."""
    out_dir = tmp_path / "dtf-secrets"
    cmds = doc_commands("Kubernetes")
    run_init(init_line("Kubernetes"), out_dir)
    made: dict[str, set[str]] = {}
    for argv in cmds:
        if argv[0] == "kubectl" and "secret" in argv and "generic" in argv:
            name = argv[argv.index("generic") + 1]
            keys: set[str] = set()
            for arg in argv:
                if arg.startswith("--from-file="):
                    path = out_dir / Path(arg.removeprefix("--from-file=")).relative_to(
                        "dtf-secrets")
                    assert path.exists(), path
                    keys |= ({p.name for p in path.iterdir() if p.is_file()} if path.is_dir()
                             else {path.name})
            made[name] = keys
    return made


def test_every_secret_and_config_map_used_is_made(tmp_path: Path) -> None:
    made = documented_secrets(tmp_path)
    assert set(made) == {"dtf-secrets", "dtf-keys"}
    assert "ca.key" not in made["dtf-secrets"]  # the CA's key stays with the operator
    generated = {g["name"] for g in yaml.safe_load(KUSTOMIZATION.read_text())
                 ["configMapGenerator"]}
    defined = {d["metadata"]["name"] for d in manifests() if d["kind"] == "ConfigMap"}
    for _, pod in dc.pod_specs(manifests()):
        for name, keys in dc.referenced(pod, "secret"):
            assert name in made, f"Secret {name} is not made in docs/deploy.md"
            assert set(keys) <= made[name], set(keys) - made[name]
        for name, _ in dc.referenced(pod, "configMap"):
            assert name in generated | defined


def test_the_nats_routes_are_named_in_the_documented_certificate() -> None:
    [sts] = [d for d in manifests() if d["kind"] == "StatefulSet"]
    [env] = [e for c in sts["spec"]["template"]["spec"]["containers"] for e in c["env"]
             if e["name"] == "NATS_ROUTES"]
    hosts = re.findall(r"nats-route://([^:]+):", env["value"])
    line = init_line("Kubernetes")
    named = line[line.index("--tls-hosts") + 1].split(",")
    name, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert hosts == [f"{name}-{i}.{svc}" for i in range(3)] and set(hosts) <= set(named)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kubectl_builds_and_reads_the_manifests(tmp_path: Path) -> None:
    built = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True,
                           text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = sorted((d["kind"], d["metadata"]["name"].split("-")[0])
                   for d in yaml.safe_load_all(built.stdout) if d)
    assert len(kinds) == len(manifests()) + 1  # and the generated ConfigMap
    rendered = tmp_path / "dtf.yaml"
    rendered.write_text(built.stdout)
    dry = subprocess.run(["kubectl", "apply", "--dry-run=client", "--validate=false", "-f",
                          str(rendered)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KUBECONFIG": str(tmp_path / "none")})
    if dry.returncode != 0 and "server API group list" in dry.stderr:
        pytest.skip("kubectl apply --dry-run=client needs a cluster's API discovery, and "
                    "there is none here (kubectl kustomize built the manifests): "
                    + dry.stderr.strip().splitlines()[-1][:200])
    assert dry.returncode == 0, dry.stderr
