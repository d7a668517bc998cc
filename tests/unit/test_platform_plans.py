"""The platform layer's decisions for Linux, macOS, the BSDs and Windows, checked here on
Linux: each is a pure function of the platform (agents/proc/plan.py). Their effects run
in tests/integration/test_process_trees.py where this OS allows (Linux, and the macOS
keeper's poll watch); the Windows calls are not run here, their structures are checked."""

from __future__ import annotations

import ctypes
import signal
import sys

import pytest

from agents.proc import jobs
from agents.proc.plan import (
    CREATE_NEW_PROCESS_GROUP,
    broken_pipe_signal,
    daemon_spawn_plan,
    death_in_process,
    kill_plan,
    platform_of,
    priority_call,
    spawn_plan,
    stop_child_signal,
    stop_signals,
    watch_method,
)
from agents.proc.tree import spawning


@pytest.mark.parametrize(("name", "platform"), [
    ("linux", "linux"), ("darwin", "darwin"), ("win32", "win32"), ("freebsd14", "posix"),
    ("cygwin", "posix"), ("openbsd7", "posix")])
def test_platform_of(name: str, platform: str) -> None:
    assert platform_of(name) == platform


def test_this_host_is_linux() -> None:  # the effects' tests assume it
    assert platform_of() == "linux" and sys.platform == "linux"


def test_a_task_gets_a_tree_of_its_own_that_dies_with_its_parent() -> None:
    linux = spawn_plan("linux")
    assert (linux.new_session, linux.creationflags, linux.death) == (True, 0, "pdeathsig")
    assert linux.popen_kwargs() == {"start_new_session": True}
    for posix in ("darwin", "posix"):
        plan = spawn_plan(posix)  # type: ignore[arg-type]
        assert (plan.new_session, plan.creationflags, plan.death) == (True, 0, "keeper")
    windows = spawn_plan("win32")
    assert (windows.new_session, windows.death) == (False, "job")
    assert windows.popen_kwargs() == {"creationflags": CREATE_NEW_PROCESS_GROUP}
    assert CREATE_NEW_PROCESS_GROUP == 0x200  # winbase.h


def test_what_the_start_passes_to_popen() -> None:
    linux = spawning(platform="linux").kwargs()
    assert linux["start_new_session"] is True and callable(linux["preexec_fn"])
    assert spawning(platform="darwin").kwargs() == {"start_new_session": True}
    assert spawning(platform="win32").kwargs() == {"creationflags": 0x200}
    # a spare pytest session: a group of its own, outlives its worker (shared by the host's)
    assert spawning(platform="linux", die_with_parent=False).kwargs() == {
        "start_new_session": True}


def test_without_a_group_only_linux_can_tie_a_child_to_its_parent() -> None:
    assert spawn_plan("linux", own_group=False).death == "pdeathsig"
    assert spawn_plan("linux", own_group=False).popen_kwargs() == {}
    assert spawn_plan("darwin", own_group=False).death == "none"  # the keeper kills groups
    assert spawn_plan("win32", own_group=False).death == "none"  # the job is the group
    for platform in ("linux", "darwin", "win32"):
        assert spawn_plan(platform, die_with_parent=False).death == "none"  # type: ignore[arg-type]


def test_dtf_ups_children() -> None:
    assert daemon_spawn_plan("linux").popen_kwargs() == {}  # Ctrl-C reaches them all
    assert daemon_spawn_plan("linux").death == "pdeathsig"  # a kill -9 of dtf up: them too
    assert daemon_spawn_plan("darwin").death == daemon_spawn_plan("win32").death == "none"
    assert daemon_spawn_plan("darwin").popen_kwargs() == {}
    assert daemon_spawn_plan("win32").popen_kwargs() == {"creationflags": 0x200}
    assert stop_child_signal("linux") == stop_child_signal("darwin") == "SIGTERM"
    assert stop_child_signal("win32") == "CTRL_BREAK_EVENT"


def test_a_chunk_dies_with_its_fork_server() -> None:
    assert death_in_process("linux") == "pdeathsig"
    assert death_in_process("darwin") == death_in_process("posix") == "watch"
    assert death_in_process("win32") == "none"
    assert watch_method(True) == "kqueue" and watch_method(False) == "poll"


def test_how_a_tree_is_ended() -> None:
    for posix in ("linux", "darwin", "posix"):
        plan = kill_plan(posix)  # type: ignore[arg-type]
        assert (plan.how, plan.gentle, plan.hard) == ("killpg", "SIGTERM", "SIGKILL")
        assert getattr(signal, plan.gentle) == signal.SIGTERM  # names this OS has
    windows = kill_plan("win32")
    assert (windows.how, windows.gentle, windows.hard) == (
        "job", "CTRL_BREAK_EVENT", "TerminateJobObject")


def test_the_signals_a_daemon_stops_on() -> None:
    assert stop_signals("linux").names == ("SIGINT", "SIGTERM")
    assert stop_signals("linux").via == stop_signals("darwin").via == "loop"
    assert stop_signals("win32").names == ("SIGINT", "SIGBREAK")
    assert stop_signals("win32").via == "handler"  # Windows loops lack add_signal_handler
    assert broken_pipe_signal("linux") == broken_pipe_signal("darwin") == "SIGPIPE"
    assert broken_pipe_signal("win32") is None


def test_how_the_projector_yields_the_cpu() -> None:
    assert priority_call("linux") == priority_call("darwin") == "nice"
    assert priority_call("win32") == "priority_class"  # no os.nice on Windows


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="64-bit layout")
def test_the_job_limits_have_windows_x64_layout() -> None:
    # sizes and offsets of JOBOBJECT_{BASIC,EXTENDED}_LIMIT_INFORMATION and IO_COUNTERS on x64
    assert ctypes.sizeof(jobs.BasicLimitInformation) == 64
    assert jobs.BasicLimitInformation.LimitFlags.offset == 16
    assert jobs.BasicLimitInformation.Affinity.offset == 48
    assert ctypes.sizeof(jobs.IoCounters) == 48
    assert ctypes.sizeof(jobs.ExtendedLimitInformation) == 144
    assert jobs.ExtendedLimitInformation.ProcessMemoryLimit.offset == 112
    limits = jobs.kill_on_close_limits()
    assert limits.BasicLimitInformation.LimitFlags == 0x2000  # KILL_ON_JOB_CLOSE


def test_a_job_is_refused_off_windows() -> None:
    with pytest.raises(OSError, match="Windows"):
        jobs.Job()
