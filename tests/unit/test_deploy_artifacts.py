"""Every deploy artifact starts `dtf` with arguments `dtf`'s own parser accepts (the older
system's scripts passed flags its programs did not have), and the service definitions
`dtf worker install` writes do too. Where a tool here can check an artifact offline, it
does (systemd-analyze); where it is missing, the test says so and skips. The compose file
and the Kubernetes manifests: test_deploy_manifests.py."""

from __future__ import annotations

import json
import plistlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cli import service_install as si
from tests.unit.deploy_checks import dtf_args_error

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
DOCKERFILES = sorted(DEPLOY.rglob("Dockerfile*"))


def exec_start(unit: str) -> list[str]:
    [line] = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def docker_command(text: str) -> list[str]:
    """ENTRYPOINT + CMD (exec form) of a Dockerfile's last stage."""
    found: dict[str, list[str]] = {}
    for m in re.finditer(r"(?m)^(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", text):
        found[m.group(1)] = json.loads(m.group(2))
    return found.get("ENTRYPOINT", []) + found.get("CMD", [])


def test_there_are_artifacts_to_check() -> None:
    assert len(UNITS) >= 3 and DOCKERFILES


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_each_systemd_unit_runs_a_command_dtf_accepts(unit: Path) -> None:
    argv = exec_start(unit.read_text())
    assert dtf_args_error(argv) is None, dtf_args_error(argv)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_each_image_runs_a_command_dtf_accepts(dockerfile: Path) -> None:
    argv = docker_command(dockerfile.read_text())
    assert dtf_args_error(argv) is None, dtf_args_error(argv)


@pytest.mark.parametrize("argv", [["dtf", "worker", "--no-such-flag"],
                                  ["dtf", "agent", "controller"], ["dtf", "wroker"],
                                  ["/usr/bin/python3", "worker"]])
def test_the_check_refuses_what_dtf_would_refuse(argv: list[str]) -> None:
    assert dtf_args_error(argv) is not None


def installed(kind: str, tmp_path: Path, **kw: object) -> si.Service:
    key = tmp_path / "worker.key"
    key.write_text("dtfk_x_y")
    argv = si.worker_argv(server="tls://nats-a:4222,tls://nats-b:4222", token_file=str(key),
                          worker_id="gpu-1", slots=4, tags="lab 2,50%$", group="gpu-pool",
                          task_user=None)
    return si.plan(kind, argv, unit_dir=str(tmp_path / "units"), name="gpu-1")


def test_the_installed_systemd_unit_runs_a_command_dtf_accepts(tmp_path: Path) -> None:
    service = installed("systemd", tmp_path)
    argv = exec_start(service.text)
    assert dtf_args_error(["dtf", *argv[1:]]) is None
    assert argv[argv.index("--tags") + 1] == "lab 2,50%$"  # quoted for systemd, unchanged
    assert "dtfk_x_y" not in service.text  # the key's path, never the key
    si.install(service, force=False)
    assert service.path.read_text() == service.text
    si.install(service, force=False)  # the same again: fine


def test_the_installed_launchd_plist_runs_a_command_dtf_accepts(tmp_path: Path) -> None:
    service = installed("launchd", tmp_path)
    plist = plistlib.loads(service.text.encode())
    argv = plist["ProgramArguments"]
    assert dtf_args_error(["dtf", *argv[-(len(argv) - argv.index("worker")):]]) is None
    assert plist["KeepAlive"] and plist["RunAtLoad"] and "dtfk_x_y" not in service.text


def test_install_refuses_to_replace_another_definition_without_force(tmp_path: Path) -> None:
    from dtf_core.errors import InvalidInput

    service = installed("systemd", tmp_path)
    service.path.parent.mkdir(parents=True)
    service.path.write_text("[Unit]\nDescription=someone else's\n")
    with pytest.raises(InvalidInput, match="--force"):
        si.install(service, force=False)
    si.install(service, force=True)
    assert service.path.read_text() == service.text


def test_a_worker_service_needs_a_credential_file(tmp_path: Path) -> None:
    from dtf_core.errors import InvalidInput

    for token_file in (None, str(tmp_path / "missing.key")):
        with pytest.raises(InvalidInput, match=r"credential file|no such file"):
            si.worker_argv(server="nats://h:4222", token_file=token_file, worker_id=None,
                           slots=None, tags="", group="", task_user=None)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here: units checked by the "
                           "parser only")
@pytest.mark.parametrize("unit", [*UNITS, None], ids=lambda p: p.name if p else "installed")
def test_systemd_reads_each_unit_without_a_complaint(unit: Path | None, tmp_path: Path) -> None:
    dtf = shutil.which("dtf") or si.dtf_program()[0]
    text = unit.read_text() if unit else installed("systemd", tmp_path).text
    # the example paths of another host's installation: this one's dtf instead
    text = re.sub(r"ExecStart=\S+", f"ExecStart={dtf}", text, count=1)
    copy = tmp_path / (unit.name if unit else "dtf-worker-gpu-1.service")
    copy.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
