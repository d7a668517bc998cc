"""Starting a child as a process tree of its own and ending the whole tree, as this
platform needs (the decisions are ``plan.py``'s; this does what they say).

    spawn = spawning()                      # or spawning(own_group=..., die_with_parent=...)
    proc = await asyncio.create_subprocess_exec(*argv, **spawn.kwargs())
    tree = spawn.adopt(proc.pid)
    ...
    tree.stop()     # a cancel: SIGTERM to the group (Windows: Ctrl-Break)
    tree.kill()     # SIGKILL to the group (Windows: TerminateJobObject)
    tree.release()  # once it has ended: no longer watched, the job's handle closed
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

import psutil

from agents.proc.jobs import Job
from agents.proc.orphans import kill_group, pdeathsig_setter
from agents.proc.plan import (
    KillPlan,
    Platform,
    PopenOptions,
    SpawnPlan,
    daemon_spawn_plan,
    kill_plan,
    platform_of,
    priority_call,
    spawn_plan,
    watch_method,
)

log = logging.getLogger(__name__)
PLATFORM = platform_of()
KEEPER_FILE = Path(__file__).with_name("orphans.py")
# resolved at import: the child between fork and exec should not load libraries
_SET_PDEATHSIG = pdeathsig_setter()


class Keeper:
    """This process's keeper (orphans.py): it kills the process groups registered with it
    when this process dies. One per process, started when first needed."""

    _shared: ClassVar[Keeper | None] = None

    def __init__(self) -> None:
        method = watch_method(hasattr(select, "kqueue"))
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(KEEPER_FILE), str(os.getpid()), method],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)

    @classmethod
    def shared(cls) -> Keeper:
        if cls._shared is None or cls._shared.proc.poll() is not None:
            cls._shared = cls()
        return cls._shared

    def _say(self, line: str) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        try:
            assert stdin is not None
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except (OSError, ValueError) as exc:  # the keeper died: the next spawn starts one
            log.warning("the keeper of process groups (pid %d) is gone: %r", self.proc.pid,
                        exc)

    def register(self, pgid: int) -> None:
        self._say(f"+{pgid}")

    def unregister(self, pgid: int) -> None:
        self._say(f"-{pgid}")

    def close(self) -> None:
        """End the keeper now: it kills the groups still registered, as at this process's
        death, and exits."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()
        if Keeper._shared is self:
            Keeper._shared = None


def kill_process_tree(pid: int) -> None:
    """The fallback where no group or job holds the tree: the process and every
    descendant psutil finds, children first."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@dataclass
class Tree:
    """A started child and everything it starts."""

    pid: int
    plan: KillPlan
    job: Job | None = None
    keeper: Keeper | None = None

    def stop(self) -> None:
        """Ask the tree to end (a cancel): it may clean up."""
        sig = getattr(signal, self.plan.gentle)
        if self.plan.how == "killpg":
            kill_group(self.pid, sig)
        else:
            with contextlib.suppress(OSError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """End the whole tree now."""
        if self.plan.how == "killpg":
            kill_group(self.pid, getattr(signal, self.plan.hard))
        elif self.job is not None:
            try:
                self.job.terminate()
            except OSError as exc:
                log.warning("cannot terminate the job of pid %d: %r", self.pid, exc)
                kill_process_tree(self.pid)
        else:
            kill_process_tree(self.pid)

    def release(self) -> None:
        """After the tree has ended: no longer kept, the job's handle closed."""
        if self.keeper is not None:
            self.keeper.unregister(self.pid)
            self.keeper = None
        if self.job is not None:
            self.job.close()
            self.job = None


@dataclass(frozen=True)
class Spawn:
    """A plan to start a child, and the calls that carry it out around the start."""

    plan: SpawnPlan
    platform: Platform

    def kwargs(self) -> PopenOptions:
        """For ``subprocess.Popen`` or ``asyncio.create_subprocess_exec``."""
        out = self.plan.popen_kwargs()
        if self.plan.death == "pdeathsig" and _SET_PDEATHSIG is not None:
            out["preexec_fn"] = _SET_PDEATHSIG
        return out

    def adopt(self, pid: int) -> Tree:
        """Once started: the child's tree, kept (keeper) or in its job as planned."""
        tree = Tree(pid, kill_plan(self.platform))
        if self.plan.death == "keeper":
            tree.keeper = Keeper.shared()
            tree.keeper.register(pid)  # its session's id is its pid
        elif self.plan.death == "job":
            try:
                tree.job = Job()
                tree.job.assign(pid)
            except OSError as exc:  # e.g. already in a job that forbids nesting
                log.warning("pid %d is in no job of its own (%r): it may outlive this "
                            "process, and a kill finds its tree with psutil", pid, exc)
                if tree.job is not None:
                    tree.job.close()
                tree.job = None
        return tree


def spawning(*, own_group: bool = True, die_with_parent: bool = True,
             platform: Platform = PLATFORM) -> Spawn:
    return Spawn(spawn_plan(platform, own_group=own_group, die_with_parent=die_with_parent),
                 platform)


def spawning_daemon(platform: Platform = PLATFORM) -> Spawn:
    """A child of ``dtf up``: see ``plan.daemon_spawn_plan``."""
    return Spawn(daemon_spawn_plan(platform), platform)


def kill_group_now(pgid: int, platform: Platform = PLATFORM) -> None:
    """Kill a process group started with ``own_group`` (a spare, the fork server's chunks),
    by its leader's pid; where groups cannot be signalled (Windows), the leader's tree."""
    plan = kill_plan(platform)
    if plan.how == "killpg":
        kill_group(pgid, getattr(signal, plan.hard))
    else:
        kill_process_tree(pgid)


def lower_priority(nice: int, platform: Platform = PLATFORM) -> None:
    """This process yields the CPU to others (``nice`` steps; Windows: below normal)."""
    try:
        if priority_call(platform) == "priority_class" or sys.platform == "win32":
            psutil.Process().nice(getattr(psutil, "BELOW_NORMAL_PRIORITY_CLASS"))  # noqa: B009
        else:
            os.nice(nice)
    except (OSError, psutil.Error) as exc:
        log.info("cannot lower this process's priority: %r", exc)
