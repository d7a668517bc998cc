"""What a worker runs on each OS (agents/proc/plan.py), and what carries it out: the
host-wide file lock, private key files, the benchmark harness's usage counters, and
placement and `dtf explain` for a worker that does not run some task type. The decisions
are pure functions of the platform, checked for every OS here on Linux; the Windows
effects (msvcrt, no mode bits) are not run here but where noted, with Windows' decision
taken on Linux's calls."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agents.auth import keyfiles
from agents.auth.errors import KeyFileError
from agents.proc import files
from agents.proc.plan import (
    NO_FORK,
    Platform,
    chunk_runner,
    lock_call,
    private_file_plan,
    task_user_supported,
    unsupported_tasks,
    usage_source,
)
from agents.worker.capabilities import detect, unsupported
from dtf_core.events.worker import Capabilities
from dtf_core.explain import explain, waiting_reason
from dtf_core.placement import Slot, mismatch, place, refusing
from dtf_core.spec import Requirements, TaskSpec
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState

POSIX: tuple[Platform, ...] = ("linux", "darwin", "posix")


@pytest.mark.parametrize("platform", POSIX)
def test_a_posix_worker_runs_every_task_type(platform: Platform) -> None:
    assert chunk_runner(platform) == "fork_server"
    assert unsupported_tasks(platform) == ()
    assert task_user_supported(platform)
    assert lock_call(platform) == "flock"
    assert usage_source(platform) == "getrusage"
    plan = private_file_plan(platform)
    assert plan.mode_bits and plan.fsync_dir


def test_a_windows_worker_runs_no_test_task_and_says_why() -> None:
    assert chunk_runner("win32") == "none"  # no fork, and no cold path to run a chunk
    [(task_type, why)] = unsupported_tasks("win32")
    assert task_type == "test"
    assert "os.fork" in why and "unix sockets" in why and "Linux or macOS" in why
    assert not task_user_supported("win32")
    assert lock_call("win32") == "msvcrt"
    assert usage_source("win32") == "psutil"
    plan = private_file_plan("win32")
    assert not plan.mode_bits and not plan.fsync_dir


def test_the_capabilities_carry_the_refusals() -> None:
    assert [(u.task_type, u.reason) for u in unsupported("win32")] == [("test", NO_FORK)]
    assert unsupported("linux") == ()
    here = detect(browsers=False, gpus=False)  # this host: Linux, runs everything
    assert here.unsupported == () and here.refuses("test") is None
    windows = Capabilities(unsupported=unsupported("win32"))
    assert windows.refuses("test") == NO_FORK
    assert windows.refuses("command") is None


WINDOWS = Capabilities(memory_gb=16, platform="windows", unsupported=unsupported("win32"))
LINUX = Capabilities(memory_gb=16, platform="linux")


def slot(worker_id: str, caps: Capabilities, free: int = 2) -> Slot:
    return Slot(worker_id=worker_id, session="s-" + worker_id, capabilities=caps, free=free,
                slots=free)


def test_mismatch_names_a_refused_task_type() -> None:
    assert mismatch(Requirements(), WINDOWS, "test") == f"does not run test tasks: {NO_FORK}"
    assert mismatch(Requirements(), WINDOWS, "command") is None
    assert mismatch(Requirements(), WINDOWS) is None  # no type given: requirements only
    assert mismatch(Requirements(), LINUX, "test") is None


def test_placement_gives_test_tasks_to_workers_that_run_them() -> None:
    ANY = Requirements()
    queued = [("chunk", ANY), ("cmd", ANY)]
    types = {"chunk": "test", "cmd": "command"}
    # the Windows worker is the least loaded: without the types, it would take the chunk
    slots = [slot("win", WINDOWS, free=4), slot("lin", LINUX, free=1)]
    assert refusing(slots)
    placed = {d.task_id: d for d in place(queued, slots, types=types)}
    assert placed["chunk"].worker_id == "lin"
    assert placed["cmd"].worker_id == "win"
    assert placed["chunk"].why.filtered == {"win": f"does not run test tasks: {NO_FORK}"}
    # only Windows workers: the chunk waits, the command runs
    only = [slot("win", WINDOWS, free=4)]
    assert [d.task_id for d in place(queued, only, types=types)] == ["cmd"]


def test_placement_without_refusing_workers_needs_no_types() -> None:
    slots = [slot("lin", LINUX)]
    assert not refusing(slots)
    [d] = place([("chunk", Requirements())], slots, types={"chunk": "test"})
    assert d.worker_id == "lin" and d.why.filtered == {}


def test_explain_says_why_no_windows_worker_takes_a_test_task() -> None:
    chunk = TaskState(task_id="t1", submitted_at=990.0,
                      spec=TaskSpec(type="test", config={"node_ids": ["t.py::t"]}))
    workers = {"win": WorkerState(worker_id="win", session="s", slots=2,
                                  capabilities=WINDOWS)}
    lines = explain(chunk, None, workers, {}, {}, 0, 1000.0)
    assert lines[1] == "No live worker meets its requirements:"
    assert f"  - win does not run test tasks: {NO_FORK}" in lines
    assert waiting_reason(chunk, workers, {}, {}, 1000.0)[0] == "no_match"
    cmd = TaskState(task_id="t2", submitted_at=990.0, spec=TaskSpec(type="noop"))
    assert waiting_reason(cmd, workers, {}, {}, 1000.0)[0] == "queued"


def test_the_host_lock_excludes_another_open_file_until_released(tmp_path: Path) -> None:
    path = tmp_path / "gw0.lock"
    first, second = open(path, "ab"), open(path, "ab")
    try:
        assert files.try_lock(first)
        assert not files.try_lock(second)  # flock: per open file, in this process too
        files.release(first)
        assert first.closed
        assert files.try_lock(second)
    finally:
        files.release(second)
        files.release(first)  # closed already: nothing to do


def test_the_account_tag_is_the_uid_on_posix(monkeypatch: pytest.MonkeyPatch) -> None:
    assert files.account_tag() == str(os.getuid())
    monkeypatch.delattr(os, "getuid")
    monkeypatch.setenv("LOGNAME", "Ann O'Neil")
    assert files.account_tag() == "Ann_O_Neil"  # a file name's characters only


def test_a_key_file_on_windows_sets_and_checks_no_mode_bits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' decision, taken with Linux's calls: no fchmod, no O_NOFOLLOW, no fsync of
    a directory, no mode check (Windows has ACLs); a symbolic link is still refused."""
    key_path = tmp_path / "keys" / "w1.key"
    loose = tmp_path / "loose.key"
    keyfiles.create_private_key_file(loose)
    os.chmod(loose, 0o644)
    with pytest.raises(KeyFileError, match="must not be accessible"):
        keyfiles.load_private_key_file(loose)  # POSIX: refused
    monkeypatch.setattr(keyfiles, "PLAN", private_file_plan("win32"))
    monkeypatch.setattr(keyfiles, "NOFOLLOW", 0)
    monkeypatch.delattr(os, "fchmod")
    monkeypatch.delattr(os, "O_NOFOLLOW")
    made = keyfiles.load_or_create_private_key_file(key_path)
    again = keyfiles.load_or_create_private_key_file(key_path)
    assert made.private_bytes_raw() == again.private_bytes_raw()
    assert keyfiles.load_private_key_file(loose) is not None  # mode bits mean nothing there
    link = tmp_path / "link.key"
    link.symlink_to(key_path)
    with pytest.raises(KeyFileError, match="symbolic link"):
        keyfiles.load_private_key_file(link)
    assert stat.S_ISREG(os.lstat(key_path).st_mode)


def test_the_harness_counts_with_psutil_where_there_is_no_getrusage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from agents.worker.bench import harness

    peak = harness.peak_rss_mb()
    monkeypatch.setattr(harness, "USAGE", "psutil")
    windows = (harness.peak_rss_mb(), harness.cpu_seconds())
    own = resource.getrusage(resource.RUSAGE_SELF)  # this process alone, as psutil's
    assert 0 < windows[0] and 0 < windows[1]
    # the same process measured both ways: psutil's RSS now, getrusage's peak before (the
    # harness's POSIX figures also count the processes it waited for: not compared here)
    assert windows[0] <= peak * 1.5
    assert abs(windows[1] - (own.ru_utime + own.ru_stime)) < 1.0
