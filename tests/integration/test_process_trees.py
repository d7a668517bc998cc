"""The platform layer's effects on real processes, where this OS can run them: a task's
process dies with its SIGKILLed parent (Linux: PDEATHSIG), a group kill ends grandchildren,
and the macOS ways (a keeper process, a watching thread), whose parent watch falls back to
polling ``getppid`` off kqueue, also run here. Windows' job objects are not run here; its
fallback kill (psutil, the tree) is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agents.proc.plan import kill_plan
from agents.proc.tree import KEEPER_FILE, Tree, spawning
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# a child that starts a grandchild and prints "its pid, the grandchild's pid"; both wait
# for a signal (not for their stdin to end: they would end with their parent on their own)
CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys
    g = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"],
                         stdin=subprocess.DEVNULL)
    print(os.getpid(), g.pid, flush=True)
    signal.pause()
""")
# a parent that starts CHILD through the layer as PLATFORM plans it, says the pids, waits
PARENT = textwrap.dedent("""
    import subprocess, sys
    from agents.proc.tree import Keeper, spawning
    spawn = (spawning(die_with_parent=False) if sys.argv[1] == "none"
             else spawning(platform=sys.argv[1]))
    pids = []
    for _ in range(int(sys.argv[2])):
        child = subprocess.Popen([sys.executable, "-c", sys.argv[3]], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, **spawn.kwargs())
        tree = spawn.adopt(child.pid)
        pids.append(child.stdout.readline().decode().strip())
    if sys.argv[4] == "release-last":
        tree.release()  # no longer the keeper's
    keeper = Keeper._shared.proc.pid if Keeper._shared is not None else 0
    print(" | ".join(pids), keeper, flush=True)
    sys.stdin.read()
""")
# a process of DTF's own code (a chunk) that watches its parent by polling
WATCHING = textwrap.dedent("""
    import os, signal
    from agents.proc.orphans import die_with_parent
    die_with_parent("watch", "poll")
    print(os.getpid(), 0, flush=True)
    signal.pause()
""")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill(pids: list[int]) -> None:
    for pid in pids:
        if pid and not gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    kill(pids)


def start_parent(platform: str, cleanup: list[int], *, children: int = 1,
                 child: str = CHILD, last: str = "keep") -> tuple[subprocess.Popen[bytes],
                                                                  list[list[int]], int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, platform, str(children), child,
                               last], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV)
    cleanup.append(parent.pid)
    assert parent.stdout is not None
    *trees, keeper = parent.stdout.readline().decode().split(" | ")
    last_tree, keeper_pid = keeper.rsplit(" ", 1)
    groups = [[int(p) for p in t.split()] for t in [*trees, last_tree]]
    cleanup.extend(p for g in groups for p in g)
    cleanup.append(int(keeper_pid))
    return parent, groups, int(keeper_pid)


def sigkill(parent: subprocess.Popen[bytes]) -> None:
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)


def test_linux_a_task_dies_when_its_parent_is_sigkilled(cleanup: list[int]) -> None:
    parent, [[child, grandchild]], keeper = start_parent("linux", cleanup)
    assert keeper == 0  # PDEATHSIG: no keeper on Linux
    assert not gone(child)
    sigkill(parent)
    eventually(lambda: gone(child), 10, "the child to die with its parent")
    assert not gone(grandchild)  # PDEATHSIG is the child's alone (as before this layer)


def test_a_group_kill_ends_grandchildren(cleanup: list[int]) -> None:
    spawn = spawning()
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, **spawn.kwargs())
    cleanup.append(proc.pid)
    tree = spawn.adopt(proc.pid)
    assert proc.stdout is not None
    _child, grandchild = map(int, proc.stdout.readline().split())
    cleanup.append(grandchild)
    assert os.getpgid(grandchild) == proc.pid  # the child's session, not ours
    tree.stop()  # SIGTERM to the group: both are Python, both end
    assert proc.wait(10) == -signal.SIGTERM
    eventually(lambda: gone(grandchild), 10, "the grandchild to end with its group")
    tree.release()


def test_the_windows_fallback_kills_the_tree_with_psutil(cleanup: list[int]) -> None:
    # a Windows tree whose job could not be made: a kill finds the tree with psutil (run
    # here with a POSIX child: the same calls)
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    cleanup.append(proc.pid)
    assert proc.stdout is not None
    child, grandchild = map(int, proc.stdout.readline().split())
    cleanup.append(grandchild)
    Tree(child, kill_plan("win32"), job=None).kill()
    assert proc.wait(10) == -signal.SIGKILL
    eventually(lambda: gone(grandchild), 10, "the grandchild to be killed")


def test_macos_the_keeper_kills_the_groups_of_a_sigkilled_parent(cleanup: list[int]) -> None:
    """The darwin plan on this host: no PDEATHSIG, a keeper watching the parent (kqueue
    there, ``getppid`` polling here). The released tree is left alone: only the keeper can
    have killed the other."""
    parent, [kept, released], keeper = start_parent("darwin", cleanup, children=2,
                                                    last="release-last")
    assert keeper and not gone(keeper)
    assert all(not gone(p) for p in [*kept, *released])
    sigkill(parent)
    eventually(lambda: all(gone(p) for p in kept), 10, "the kept tree to be killed")
    eventually(lambda: gone(keeper), 10, "the keeper to exit")
    assert not any(gone(p) for p in released)


def test_macos_the_keepers_watch_alone_kills_the_groups(cleanup: list[int]) -> None:
    """Its parent gone while its stdin stays open (the watch fires, not the end of input):
    the keeper kills what was registered and exits."""
    spawn = spawning(die_with_parent=False)
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, **spawn.kwargs())
    cleanup.append(proc.pid)
    assert proc.stdout is not None
    child, grandchild = map(int, proc.stdout.readline().split())
    cleanup.append(grandchild)
    read, write = os.pipe()
    try:
        os.write(write, f"+{child}\n".encode())
        # "parent" 1: not the keeper's parent (this test is), so it is gone from the start
        keeper = subprocess.Popen([sys.executable, "-I", str(KEEPER_FILE), "1", "poll"],
                                  stdin=read)
        cleanup.append(keeper.pid)
        assert keeper.wait(10) == 0
        assert proc.wait(10) == -signal.SIGKILL
        eventually(lambda: gone(grandchild), 10, "the grandchild to be killed")
    finally:
        os.close(read)
        os.close(write)


def test_macos_a_chunk_watching_its_parent_dies_with_it(cleanup: list[int]) -> None:
    """A process of DTF's code (a forked chunk on macOS) ends from its own thread when its
    parent dies; the same child without the watch lives on."""
    watching, [[child, _]], _ = start_parent("none", cleanup, child=WATCHING)
    plain, [[control, _]], _ = start_parent("none", cleanup)
    sigkill(watching)
    sigkill(plain)
    eventually(lambda: gone(child), 10, "the watching child to die")
    assert not gone(control)


def test_a_process_lowers_its_own_priority() -> None:
    code = ("import os; from agents.proc.tree import lower_priority; before = os.nice(0); "
            "lower_priority(7); print(os.nice(0) - before)")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert int(out) == 7 or (int(out) > 0 and os.nice(0) + 7 > 19)  # capped at 19


@pytest.mark.parametrize("via", ["loop", "handler"])
def test_a_stop_signal_reaches_the_loop(via: str) -> None:
    """Both ways a daemon catches its stop signals: the loop's (POSIX) and a handler that
    hands over to the loop (Windows', run here with SIGUSR1 for SIGBREAK)."""
    code = textwrap.dedent(f"""
        import asyncio, os, signal
        from agents.proc.plan import StopSignals
        from agents.proc.signals import on_stop_signals

        async def main():
            stopped = asyncio.Event()
            on_stop_signals(asyncio.get_running_loop(), stopped.set,
                            StopSignals(("SIGUSR1",), "{via}"))
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(stopped.wait(), 10)
            print("stopped")

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                         text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "stopped\n"), out.stderr
