"""A Windows worker imports: every module `dtf worker` can reach (cli, agents/worker,
agents/proc, agents/host) is imported here in a Python without what Windows lacks (the
POSIX-only modules raise ImportError, the POSIX-only calls and constants of os, socket,
signal and asyncio are gone), and the worker's decisions for "win32" are taken there. This
host is Linux: nothing here runs Windows; it proves that nothing POSIX-only is touched at
import, and what a Windows worker would decide (ADR 0014, "Windows workers")."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("fcntl", "resource", "pwd", "grp", "termios", "tty", "pty", "posix")
GONE = {
    "os": ("fork", "forkpty", "setsid", "setpgid", "getpgid", "killpg", "getuid", "geteuid",
           "getgid", "getegid", "setuid", "setgid", "initgroups", "chown", "fchmod",
           "getloadavg", "nice", "WNOHANG", "O_NOFOLLOW", "wait4"),
    "socket": ("AF_UNIX",),
    "signal": ("SIGKILL", "SIGHUP", "SIGPIPE", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGALRM",
               "SIGQUIT"),
    "asyncio": ("open_unix_connection", "start_unix_server"),
}
# What a worker imports (and its CLI): every module of these packages.
PACKAGES = ("cli", "agents.worker", "agents.proc", "agents.host")

PROBE = r'''
import importlib, importlib.abc, json, pkgutil, sys
BLOCKED, GONE, PACKAGES = json.loads(sys.argv[1])
# The third parties take their own path on each OS: loaded as they are on this one.
import asyncio, getpass, subprocess, tarfile, psutil, msgspec, nats, cryptography, pytest

class NotOnWindows(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ImportError(f"No module named {name!r} (not on Windows)")
        return None

for name in BLOCKED:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, NotOnWindows())
for module, names in GONE.items():
    for name in names:
        if hasattr(sys.modules[module], name):
            delattr(sys.modules[module], name)

failed, imported = {}, []
for package in PACKAGES:
    try:
        root = importlib.import_module(package)
    except Exception as exc:
        failed[package] = repr(exc)
        continue
    names = [m.name for m in pkgutil.walk_packages(getattr(root, "__path__", []),
                                                   package + ".")]
    for name in [package, *names]:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception as exc:
            failed[name] = repr(exc)
leaked = sorted(set(BLOCKED) & set(sys.modules))
decided = {}
try:
    from agents.proc import plan
    from agents.proc.files import account_tag
    from agents.worker.capabilities import unsupported
    from agents.worker.runner import TaskUser
    from dtf_core.errors import InvalidInput

    decided["chunk_runner"] = plan.chunk_runner("win32")
    decided["unsupported"] = [u.task_type for u in unsupported("win32")]
    decided["account_tag"] = account_tag()
    try:
        TaskUser.lookup("nobody", platform="win32")
        decided["task_user"] = "accepted"
    except InvalidInput as exc:
        decided["task_user"] = str(exc)
except Exception as exc:
    decided["error"] = repr(exc)
print(json.dumps({"failed": failed, "imported": imported, "leaked": leaked,
                  "decided": decided}))
'''


@functools.cache  # one probe (about 3 s) for the tests that read it
def probe(packages: tuple[str, ...] = PACKAGES) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        env.pop(name, None)  # getpass would otherwise answer without pwd
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([BLOCKED, GONE, packages])],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_every_module_a_worker_imports_loads_without_posix() -> None:
    result = probe()
    assert result["failed"] == {}
    assert result["leaked"] == []
    imported = result["imported"]
    assert isinstance(imported, list)
    # what `dtf worker` runs, and the modules the old imports of fcntl and resource were in
    for name in ("cli.main", "cli.hosting", "agents.host.launch", "agents.worker.agent",
                 "agents.worker.pytest.pool", "agents.worker.pytest.spares",
                 "agents.worker.bench.harness", "agents.host.servers", "agents.proc.jobs"):
        assert name in imported


def test_a_windows_worker_refuses_test_tasks_and_task_users_and_names_itself() -> None:
    decided = probe()["decided"]
    assert isinstance(decided, dict)
    assert "error" not in decided, decided.get("error")
    assert decided["chunk_runner"] == "none"
    assert decided["unsupported"] == ["test"]
    assert decided["account_tag"] == "user"  # no uid, no user name in the environment
    assert "POSIX hosts only" in str(decided["task_user"])


def test_the_probe_sees_a_posix_import() -> None:
    """The blocking works: importing fcntl, or a module that does at its top, fails in the
    probe (as agents/worker/pytest/spares.py did before agents/proc/files.py)."""
    result = probe(("shlex", "fcntl", "agents.proc.orphans"))
    assert "shlex" in result["imported"]  # type: ignore[operator]
    failed = result["failed"]
    assert isinstance(failed, dict) and "not on Windows" in failed["fcntl"]
    assert "agents.proc.orphans" in result["imported"]  # type: ignore[operator]
