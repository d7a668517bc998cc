"""What each operating system needs to run a process tree: pure decisions, one function of
the platform each, so that the Linux, macOS and Windows choices are unit-tested on any
host. The effects that carry them out are in ``tree.py``, ``orphans.py`` and ``jobs.py``.

Standard library only, and no DTF import: the fork server's chunks load it by path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypedDict

Platform = Literal["linux", "darwin", "win32", "posix"]
# How a started process ends when the process that started it dies:
#   pdeathsig: Linux's prctl(PR_SET_PDEATHSIG, SIGKILL), set in the child before exec;
#   keeper: a small process of the parent's (orphans.py) watches it and kills the
#           registered process groups when it is gone (no such call on macOS or BSD);
#   watch: in a process that runs DTF's code (a chunk), a thread that watches the parent;
#   job: Windows, a job object that kills its processes when its last handle closes;
#   none: it outlives the parent.
Death = Literal["pdeathsig", "keeper", "watch", "job", "none"]
WatchMethod = Literal["kqueue", "poll"]

CREATE_NEW_PROCESS_GROUP = 0x00000200  # Windows: Ctrl-Break reaches it alone
POLL_S = 0.2  # how often a poll watcher looks at its parent


def platform_of(name: str = sys.platform) -> Platform:
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    if name == "win32":
        return "win32"
    return "posix"  # the BSDs, Cygwin and others: POSIX calls, no prctl


class PopenOptions(TypedDict, total=False):
    """The keyword arguments of ``subprocess.Popen`` and ``create_subprocess_exec`` that
    a plan sets."""

    start_new_session: bool
    creationflags: int
    preexec_fn: Callable[[], None]


@dataclass(frozen=True)
class SpawnPlan:
    """How to start a child: its own process group (POSIX session, Windows group) or not,
    and how it dies with its parent."""

    new_session: bool
    creationflags: int
    death: Death

    def popen_kwargs(self) -> PopenOptions:
        """What carries the plan out at the start, but for the child's ``preexec_fn``
        (tree.py adds it for pdeathsig)."""
        out: PopenOptions = {}
        if self.new_session:
            out["start_new_session"] = True
        if self.creationflags:
            out["creationflags"] = self.creationflags
        return out


def spawn_plan(platform: Platform, *, own_group: bool = True,
               die_with_parent: bool = True) -> SpawnPlan:
    """``own_group``: the child and what it starts can be signalled, and killed, together
    and apart from the parent. ``die_with_parent``: killed when the parent dies, even by
    SIGKILL (on Windows only together with ``own_group``: the job is the group)."""
    windows = platform == "win32"
    new_session = own_group and not windows
    flags = CREATE_NEW_PROCESS_GROUP if own_group and windows else 0
    death: Death = "none"
    if die_with_parent:
        if platform == "linux":
            death = "pdeathsig"
        elif windows:
            death = "job" if own_group else "none"
        else:
            death = "keeper" if own_group else "none"
    return SpawnPlan(new_session, flags, death)


def daemon_spawn_plan(platform: Platform) -> SpawnPlan:
    """A child of ``dtf up`` (nats-server, an agent, a local worker), which ``dtf up``
    stops with ``stop_child_signal``. POSIX: in ``dtf up``'s process group, so a
    terminal's Ctrl-C reaches them all at once; on Linux it dies with ``dtf up`` (a
    ``kill -9`` of it left the whole stack running, holding its ports). Windows: a group
    of its own, the only way Ctrl-Break reaches one child (Ctrl-C in the console still
    reaches ``dtf up``, which stops them)."""
    if platform == "win32":
        return SpawnPlan(False, CREATE_NEW_PROCESS_GROUP, "none")
    return SpawnPlan(False, 0, "pdeathsig" if platform == "linux" else "none")


def death_in_process(platform: Platform) -> Death:
    """How a process running DTF's own code (a forked chunk) dies with its parent."""
    if platform == "linux":
        return "pdeathsig"
    if platform == "win32":
        return "none"  # no fork on Windows: there are no chunks to watch
    return "watch"


def watch_method(has_kqueue: bool) -> WatchMethod:
    """kqueue's EVFILT_PROC/NOTE_EXIT (macOS, the BSDs) wakes the watcher when the parent
    exits; elsewhere it polls ``os.getppid()`` (which changes when the parent is gone)."""
    return "kqueue" if has_kqueue else "poll"


@dataclass(frozen=True)
class KillPlan:
    """How to end a started tree: ``killpg`` sends ``gentle`` (a cancel) or ``hard`` to the
    process group; ``job`` sends ``gentle`` to the process (Ctrl-Break to its group) and
    terminates the job object for ``hard``. Signals are named: not every name exists on
    every platform."""

    how: Literal["killpg", "job"]
    gentle: str
    hard: str


def kill_plan(platform: Platform) -> KillPlan:
    if platform == "win32":
        return KillPlan("job", "CTRL_BREAK_EVENT", "TerminateJobObject")
    return KillPlan("killpg", "SIGTERM", "SIGKILL")


@dataclass(frozen=True)
class StopSignals:
    """The signals that stop a daemon (``dtf up``, an agent, a worker), and how they are
    caught: ``loop`` by the asyncio loop (POSIX), ``handler`` by ``signal.signal`` handing
    over to the loop (Windows: its loops have no ``add_signal_handler``; Ctrl-C is SIGINT,
    Ctrl-Break and a console's close are SIGBREAK)."""

    names: tuple[str, ...]
    via: Literal["loop", "handler"]


def stop_signals(platform: Platform) -> StopSignals:
    if platform == "win32":
        return StopSignals(("SIGINT", "SIGBREAK"), "handler")
    return StopSignals(("SIGINT", "SIGTERM"), "loop")


def stop_child_signal(platform: Platform) -> str:
    """What ``dtf up`` sends a child to stop it cleanly (the child then runs its cleanup):
    SIGTERM, or on Windows Ctrl-Break to the child's own process group (SIGTERM there is
    TerminateProcess, which runs nothing)."""
    return "CTRL_BREAK_EVENT" if platform == "win32" else "SIGTERM"


def broken_pipe_signal(platform: Platform) -> str | None:
    """The signal whose default a client restores so that ``dtf tasks | head`` ends
    quietly: SIGPIPE, where it exists."""
    return None if platform == "win32" else "SIGPIPE"


def priority_call(platform: Platform) -> Literal["nice", "priority_class"]:
    """How a process lowers its own CPU priority: ``os.nice`` (POSIX), or a priority
    class (Windows has no ``os.nice``: psutil's BELOW_NORMAL_PRIORITY_CLASS)."""
    return "priority_class" if platform == "win32" else "nice"


# --- what a worker on this platform can run ----------------------------------------------

ChunkRunner = Literal["fork_server", "none"]
NO_FORK = ("a test task runs in the pytest fork server (agents/worker/pytest), which needs "
           "os.fork and unix sockets: Windows has neither, and DTF has no other way to run "
           "a chunk; run test tasks on a Linux or macOS worker")


def chunk_runner(platform: Platform) -> ChunkRunner:
    """How a worker runs a ``test`` task's chunk: in a child forked from the host's warm
    pytest session (ADR 0007), or not at all (Windows: no fork; there is no cold path
    that runs a chunk in a fresh pytest process, see ADR 0014)."""
    return "none" if platform == "win32" else "fork_server"


def unsupported_tasks(platform: Platform) -> tuple[tuple[str, str], ...]:
    """The task types a worker on ``platform`` does not run, each with why: it advertises
    them in its capabilities, placement gives it none, ``dtf explain`` says why, and it
    declines a lease of one (placed by an older scheduler)."""
    if chunk_runner(platform) == "none":
        return (("test", NO_FORK),)
    return ()


def task_user_supported(platform: Platform) -> bool:
    """``dtf worker --task-user``: POSIX accounts (``pwd``, setuid in the child). Windows
    would need a logon token per task, which DTF does not do."""
    return platform != "win32"


def lock_call(platform: Platform) -> Literal["flock", "msvcrt"]:
    """How a process takes an exclusive, non-blocking lock on a file that other processes
    of the host see: ``fcntl.flock`` (POSIX), or ``msvcrt.locking`` on one byte far past
    the file's content (Windows' locks are mandatory: locking the content would keep
    others from reading who holds it)."""
    return "msvcrt" if platform == "win32" else "flock"


def usage_source(platform: Platform) -> Literal["getrusage", "psutil"]:
    """Where a benchmark's harness reads its peak memory and CPU time: ``getrusage`` of
    itself and its children (POSIX, ``resource``), or psutil's counters of itself
    (Windows: no ``resource``; its children's CPU time is not counted there)."""
    return "psutil" if platform == "win32" else "getrusage"


@dataclass(frozen=True)
class PrivateFilePlan:
    """How a private file (a key, a token) is kept private and durable. ``mode_bits``:
    created 0600 and refused when group or others may read it (POSIX); Windows has ACLs
    instead (its ``st_mode`` shows only the read-only flag): nothing is set or checked,
    the file is as private as its directory (the user's profile by default).
    ``fsync_dir``: the directory is fsynced after a rename (POSIX); Windows cannot open a
    directory as a file (NTFS journals the rename itself)."""

    mode_bits: bool
    fsync_dir: bool


def private_file_plan(platform: Platform) -> PrivateFilePlan:
    posix = platform != "win32"
    return PrivateFilePlan(mode_bits=posix, fsync_dir=posix)
