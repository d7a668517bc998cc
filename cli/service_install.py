"""`dtf worker install --systemd|--launchd`: a service definition that runs this host's
worker at boot, with its own credential file, restarted when it exits.

The definition names the credential by path and never holds it: a token in a unit file or
a plist would be a plaintext secret at rest. It runs the `dtf` of this installation (its
absolute path), so no PATH or virtual environment needs activating.
"""

from __future__ import annotations

import os
import plistlib
import sys
from dataclasses import dataclass
from pathlib import Path

from dtf_core.errors import InvalidInput
from dtf_core.ids import validate_id

LABEL = "io.dtf.worker"


@dataclass(frozen=True)
class Service:
    path: Path
    text: str
    enable: str  # what to run next, said to the user


def dtf_program() -> list[str]:
    """This installation's `dtf`: the console script beside this Python, or the module."""
    script = Path(sys.executable).with_name("dtf")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cli.main"]


def worker_argv(*, server: str, token_file: str | None, worker_id: str | None,
                slots: int | None, tags: str, group: str, task_user: str | None) -> list[str]:
    """The worker's command line; the credential file must exist (made absolute)."""
    if not token_file:
        raise InvalidInput(
            "a worker service needs its own credential file: on the stack's host run "
            "`dtf worker-key create ID > worker.key`, copy it here as a 0600 file, and pass "
            "--token-file FILE (DTF_TOKEN holds the secret itself: it is not written into a "
            "service definition)")
    path = Path(token_file).expanduser().resolve()
    if not path.is_file():
        raise InvalidInput(f"--token-file {path}: no such file")
    argv = [*dtf_program(), "worker", "--server", server, "--token-file", str(path)]
    if worker_id:
        argv += ["--id", validate_id(worker_id, "worker id")]
    if slots is not None:
        if slots < 1:
            raise InvalidInput("--slots must be 1 or more")
        argv += ["--slots", str(slots)]
    if tags:
        argv += ["--tags", tags]
    if group:
        argv += ["--group", group]
    if task_user:
        argv += ["--task-user", task_user]
    return argv


def _systemd_word(arg: str) -> str:
    """One ExecStart word: systemd expands % specifiers and $ variables, and splits on
    spaces unless quoted."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(argv: list[str], env: dict[str, str], *, system: bool, name: str) -> str:
    lines = [
        "[Unit]",
        f"Description=DTF worker ({name})",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "ExecStart=" + " ".join(_systemd_word(a) for a in argv),
        *(f"Environment={_systemd_word(f'{k}={v}')}" for k, v in sorted(env.items())),
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=always",
        "RestartSec=2",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if system else 'default.target'}",
        "",
    ]
    return "\n".join(lines)


def launchd_plist(argv: list[str], env: dict[str, str], log_dir: Path) -> str:
    plist = {
        "Label": LABEL,
        "ProgramArguments": argv,
        "EnvironmentVariables": {**env, "PYTHONUNBUFFERED": "1"},
        "RunAtLoad": True,
        "KeepAlive": True,
        "StandardOutPath": str(log_dir / "dtf-worker.log"),
        "StandardErrorPath": str(log_dir / "dtf-worker.log"),
    }
    return plistlib.dumps(plist).decode()


def plan(kind: str, argv: list[str], *, unit_dir: str | None, name: str) -> Service:
    """Where the definition goes and what it says; nothing is written yet."""
    system = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    ca = os.environ.get("DTF_TLS_CA")
    env = {"DTF_TLS_CA": str(Path(ca).expanduser().resolve())} if ca else {}
    home = Path.home()
    if kind == "systemd":
        unit = f"dtf-worker-{name}.service" if name != "default" else "dtf-worker.service"
        where = Path(unit_dir) if unit_dir else (
            Path("/etc/systemd/system") if system else home / ".config/systemd/user")
        scope = "" if system else " --user"
        enable = (f"systemctl{scope} daemon-reload && systemctl{scope} enable --now {unit}"
                  + ("" if system else "\n(and `loginctl enable-linger` to run it without "
                     "a login session)"))
        return Service(where / unit, systemd_unit(argv, env, system=system, name=name),
                       enable)
    where = Path(unit_dir) if unit_dir else (
        Path("/Library/LaunchDaemons") if system else home / "Library/LaunchAgents")
    logs = Path("/Library/Logs") if system else home / "Library/Logs"
    path = where / f"{LABEL}.plist"
    domain = "system" if system else "gui/$(id -u)"
    return Service(path, launchd_plist(argv, env, logs),
                   f"launchctl bootstrap {domain} {path}")


def install(service: Service, *, force: bool) -> None:
    """Write the definition; one that exists with other content stays unless ``force``."""
    if service.path.exists() and service.path.read_text() != service.text and not force:
        raise InvalidInput(f"{service.path} exists with other content: pass --force to "
                           "replace it, or --print to see the new one")
    service.path.parent.mkdir(parents=True, exist_ok=True)
    service.path.write_text(service.text)
