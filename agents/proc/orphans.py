"""No process outlives the one that started it: POSIX effects of the plans in ``plan.py``.

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the child before exec.
- macOS and the BSDs have no such call. A process running DTF's code (a forked chunk)
  watches its parent in a thread; for commands (any program, exec'd) the parent runs a
  *keeper* (this file, ``python -I orphans.py PARENT_PID METHOD``) in a session of its own:
  it reads ``+PGID`` and ``-PGID`` lines on stdin and kills the groups still registered
  when the parent is gone (its stdin ends, or the watch fires).
- The watch: kqueue's EVFILT_PROC/NOTE_EXIT on the parent's pid where ``select.kqueue``
  exists, else polling ``os.getppid()``, which changes when the parent dies.

Standard library only, and no DTF import: it runs by path (the keeper, a chunk).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1
POLL_S = 0.2  # plan.POLL_S: how often a poll watcher looks at its parent


def pdeathsig_setter() -> Callable[[], None] | None:
    """A function for a child's ``preexec_fn`` that asks Linux for SIGKILL when its parent
    dies, or None where prctl is missing. prctl is resolved here, once: the child between
    fork and exec should not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:  # pragma: no cover (runs in the child, before exec)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return set_pdeathsig


def kill_group(pgid: int, sig: int) -> None:
    """Signal a process group; one already gone (or no longer ours) is no error."""
    if sys.platform == "win32":
        raise OSError("no process groups to signal on Windows (plan.py)")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ParentWatch:
    """Is ``parent`` (this process's parent when the watch began) gone? With kqueue, the
    queue's descriptor becomes readable when it exits; without, ``timeout`` says how often
    to look again."""

    def __init__(self, method: str, parent: int | None = None) -> None:
        self.parent = os.getppid() if parent is None else parent
        self.queue: Any = None
        self.exited = False
        if method == "kqueue":
            self.queue, self.exited = _exit_queue(self.parent)
        self.timeout: float | None = None if self.queue is not None else POLL_S

    def fds(self) -> list[int]:
        return [self.queue.fileno()] if self.queue is not None else []

    def gone(self) -> bool:
        if not self.exited and self.queue is not None and self.queue.control(None, 1, 0):
            self.exited = True
        # reparented: its parent died (checked with kqueue too, for a watch begun late)
        return self.exited or os.getppid() != self.parent

    def wait(self) -> None:
        """Block until the parent is gone."""
        while not self.gone():
            select.select(self.fds(), [], [], self.timeout)


def _exit_queue(pid: int) -> tuple[Any, bool]:
    """A kqueue told of ``pid``'s exit, and whether it had exited already."""
    if sys.platform == "linux" or sys.platform == "win32":
        raise OSError(f"no kqueue on {sys.platform}")
    queue = select.kqueue()
    event = select.kevent(pid, filter=select.KQ_FILTER_PROC,
                          flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
                          fflags=select.KQ_NOTE_EXIT)
    try:
        queue.control([event], 0, 0)
    except ProcessLookupError:  # gone before the watch began
        return queue, True
    return queue, False


def die_with_parent(death: str, method: str) -> None:
    """In a process running DTF's code: end by SIGKILL when the parent dies, as a
    ``pdeathsig`` (Linux) or from a watching thread (``watch``)."""
    if death == "pdeathsig":
        setter = pdeathsig_setter()
        if setter is None:
            raise OSError("prctl is not available")
        setter()
    elif death == "watch":
        if sys.platform == "win32":
            raise OSError("no fork on Windows (plan.py)")
        watch = ParentWatch(method)

        def run() -> None:
            watch.wait()
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=run, name="dtf-parent-watch", daemon=True).start()


def keep(parent: int, method: str, stdin: int = 0) -> None:
    """The keeper's loop: track the groups registered on ``stdin``; when the parent is
    gone, kill those still registered, then return."""
    if sys.platform == "win32":
        raise OSError("the keeper is POSIX's (plan.py)")
    watch = ParentWatch(method, parent)
    groups: set[int] = set()
    pending = b""
    ending = False
    while True:
        timeout = 0.0 if ending else watch.timeout
        ready, _, _ = select.select([stdin, *watch.fds()], [], [], timeout)
        if stdin in ready:
            data = os.read(stdin, 4096)
            if not data:
                break  # the parent closed its end: it exited, one way or another
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line[:1] == b"+":
                    groups.add(int(line[1:]))
                elif line[:1] == b"-":
                    groups.discard(int(line[1:]))
        elif ending:
            break  # read all it had written before it died
        if not ending and watch.gone():
            ending = True
    for pgid in groups:
        kill_group(pgid, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's
    keep(int(sys.argv[1]), sys.argv[2])
