"""`dtf run pytest` runs real pytest sessions on real workers against a real server, and
says what plain pytest says: the same counts, failure sections and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.dist import Dist, secure_stack

pytestmark = pytest.mark.anyio

MIXED = {
    "tests/test_mixed.py": """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")

        @pytest.mark.parametrize("i", range(12))
        def test_ok(i):
            assert i >= 0

        def test_fails():
            assert [1, 2] == [1, 3], "lists differ"

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass

        @pytest.mark.xfail(reason="known")
        def test_xfails():
            assert False

        @pytest.mark.xfail(reason="known", strict=False)
        def test_xpasses():
            pass

        def test_errors(broken):
            pass

        def test_prints():
            print("captured words")
            assert 0
        """,
    "tests/test_other.py": """
        def test_a():
            pass

        def test_b():
            pass
        """,
}


def summary(out: str) -> str:
    """pytest's final line without the time: '2 failed, 16 passed, ... in 1.23s'."""
    line = [ln for ln in out.splitlines() if re.match(r"^=+ .* in [0-9.]+s", ln)][-1]
    return re.sub(r" in [0-9.]+s.*", "", line.strip("= "))


async def test_counts_failures_and_exit_code_match_plain_pytest(dist: Dist) -> None:
    root = dist.suite("mixed", MIXED)
    rc_plain, plain = await dist.plain(root, "tests")
    rc, out = await dist.run(root, "tests", "--junit-xml", "junit.xml")
    assert summary(out) == summary(plain) == (
        "2 failed, 14 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 error")
    assert rc == rc_plain == 1
    assert "no duration history" in out and "packed by test count" in out
    for text in ("AssertionError: lists differ", "fixture broke", "captured words",
                 "Captured stdout call", "FAILED tests/test_mixed.py::test_fails",
                 "ERROR tests/test_mixed.py::test_errors"):
        assert text in out, text
    suite = ET.parse(root / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("20", "2", "1", "2")

    # The second run splits by the durations the first one recorded in DuckDB.
    rc2, out2 = await dist.run(root, "tests")
    assert rc2 == 1 and summary(out2) == summary(out)
    assert "packed by measured durations" in out2


async def test_exit_codes(dist: Dist) -> None:
    root = dist.suite("codes", {**MIXED, "tests/test_broken.py": "def test_x(:\n"})
    rc, out = await dist.run(root, "tests/test_other.py")
    assert rc == 0 and summary(out) == "2 passed"
    run_id = re.search(r"dtf: run (r-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    rc, listed = await dist.run(root, "--run", run_id, "--json", command=("tasks",))
    logged = ""
    for task in __import__("json").loads(listed):
        rc, text = await dist.run(root, task["id"], command=("logs",))
        assert rc == 0
        logged += text
    for name in ("test_a", "test_b"):  # `dtf logs` shows each test of the task
        assert f"PASSED tests/test_other.py::{name}" in logged, logged
    rc, out = await dist.run(root, "tests/test_other.py", "-k", "no_such_test")
    assert rc == 5, out
    rc, out = await dist.run(root, "tests")
    assert rc == 2 and "error during collection" in out.lower(), out


async def test_a_crashing_test_fails_alone_and_the_run_ends(dist: Dist) -> None:
    root = dist.suite("crash", {"tests/test_crash.py": """
        import os

        def test_before():
            pass

        def test_segfaults():
            os._exit(139)

        def test_after():
            pass

        def test_after_too():
            pass
        """})
    rc, out = await dist.run(root, "tests")
    assert rc == 1
    assert summary(out) == "1 failed, 3 passed"
    assert "the pytest process died (exit code 139) while running this test" in out
    assert "FAILED tests/test_crash.py::test_segfaults" in out


async def test_requirement_markers_route_or_fail_the_unmatched(dist: Dist) -> None:
    root = dist.suite("markers", {"tests/test_gpu.py": """
        import pytest

        @pytest.mark.dtf(hardware=["cuda"], min_memory_gb=16)
        def test_needs_a_gpu():
            pass

        @pytest.mark.dtf(min_memory_gb=0.001)
        def test_runs_anywhere():
            pass
        """})
    rc, out = await dist.run(root, "tests")
    assert rc == 1 and summary(out) == "1 failed, 1 passed"
    assert "no live DTF worker meets this test's requirements" in out
    assert '"hardware":["cuda"]' in out
    rc, out = await dist.run(root, "tests", "--allow-unmatched")
    assert rc == 0 and summary(out) == "1 passed, 1 skipped"
    # Requirements by path, from pyproject.toml, for tests without a marker.
    (root / "tests" / "gpu").mkdir()
    (root / "tests" / "gpu" / "test_kernel.py").write_text("def test_kernel():\n    pass\n")
    (root / "pyproject.toml").write_text(
        '[tool.dtf.ci.requirements]\n"tests/gpu/" = {hardware = ["rocm"]}\n')
    rc, out = await dist.run(root, "tests/gpu")
    assert rc == 1 and summary(out) == "1 failed" and '"hardware":["rocm"]' in out


async def test_reruns_mark_a_flaky_test_with_both_workers(dist: Dist, tmp_path: Path) -> None:
    marker = tmp_path / "flaky-marker"
    root = dist.suite("flaky", {"tests/test_flaky.py": f"""
        from pathlib import Path

        def test_flaky():
            marker = Path({str(marker)!r})
            if not marker.exists():
                marker.write_text("failed once")
                assert False, "first try fails"

        def test_always_fails():
            assert False
        """})
    rc, out = await dist.run(root, "tests", "--reruns", "1")
    assert rc == 1 and summary(out) == "1 failed, 1 passed", out
    assert "flaky tests (passed on rerun)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("tests/test_flaky.py::test_flaky:"))
    outcomes = re.findall(r"(failed|passed) on ([\w-]+)", line)
    assert [o for o, _ in outcomes] == ["failed", "passed"]
    assert outcomes[0][1] != outcomes[1][1]  # the rerun went to the other worker


async def test_packed_code_runs_from_the_verified_cache(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """As on another host: the workers must not use the tree in place, and may read packs
    (and only read them) under the server's worker permissions."""
    monkeypatch.setenv("DTF_ALWAYS_UNPACK", "1")
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path) as dist:
        await _packed(dist)


async def _packed(dist: Dist) -> None:
    root = dist.suite("packed", {"tests/test_where.py": """
        import os
        from pathlib import Path

        def test_runs_from_a_working_copy_of_the_pack():
            assert os.sep + "work" + os.sep in __file__, __file__
            Path("written-by-a-test.txt").write_text("tests write where they run")
        """})
    rc, out = await dist.run(root, "tests", "--dtf-pack", "always")
    assert "code pack" in out and "uploaded" in out
    assert rc == 0, out
    cache = dist.tmp / "cache"
    (pristine,) = (cache / "packs").iterdir()
    assert (pristine / ".dtf-pack-ok").exists()
    assert not (pristine / "written-by-a-test.txt").exists()  # the verified pack is intact
    assert (cache / "work" / pristine.name / "written-by-a-test.txt").exists()
    assert not (root / "written-by-a-test.txt").exists()  # nor did it run in place


async def test_dtf_ci_writes_reports_stores_artifacts_and_tells_github(dist: Dist) -> None:
    from tests.fake_http import fake_api

    root = dist.suite("ci", MIXED)
    summary_file = root / "step-summary.md"
    with fake_api() as api:
        env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary_file),
               "GITHUB_TOKEN": "ghs_x", "GITHUB_REPOSITORY": "acme/app",
               "GITHUB_REF": "refs/pull/3/merge", "GITHUB_API_URL": api.url}
        rc, out = await dist.run(root, "--timeout", "120", "--", "tests", command=("ci",),
                                 env=env)
    assert rc == 1, out
    assert summary(out) == "2 failed, 14 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 error"
    assert "::error file=tests/test_mixed.py,line=" in out
    reports = root / "dtf-reports"
    data = __import__("json").loads((reports / "report.json").read_text())
    assert data["counts"] == {"failed": 2, "passed": 14, "skipped": 1, "xfailed": 1,
                              "xpassed": 1, "error": 1}
    assert "<html" in (reports / "report.html").read_text()
    assert "Failures (3)" in summary_file.read_text()
    (req,) = api.requests
    assert req.path == "/repos/acme/app/issues/3/comments"
    run_id = data["run_id"]
    assert f"dtf artifacts get {run_id} junit.xml" in out
    rc, got = await dist.run(root, "get", run_id, "junit.xml", "-o", "fetched.xml",
                             command=("artifacts",))
    assert rc == 0, got
    assert (root / "fetched.xml").read_bytes() == (reports / "junit.xml").read_bytes()
    rc, bad = await dist.run(root, "get", run_id, "../../etc/passwd", command=("artifacts",))
    assert rc == 2 and "invalid artifact name" in bad


async def test_a_session_is_reused_until_what_it_collected_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm runs fork from the same collected session; a changed source, a new test file
    or a new module makes a new one, and a test's output file next to the code does not.
    Every run starts from a fresh fork: what a run changes in memory, the next never sees."""
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path, workers=1) as dist:
        await _reuse(dist, tmp_path)


async def _reuse(dist: Dist, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    root = dist.suite("reuse", {"tests/test_parent.py": f"""
        import os
        import pathlib
        import helper

        def test_records_its_session():
            pathlib.Path({str(seen)!r}, str(os.getpid())).write_text(str(os.getppid()))
            assert helper.VALUE == helper.EXPECTED
            helper.VALUE = "changed by a test"  # never seen by the next run
        """, "tests/helper.py": "VALUE = 1\nEXPECTED = 1\n"})

    async def session_of_run() -> str:
        before = set(seen.iterdir())
        rc, out = await dist.run(root, "tests")
        assert rc == 0, out
        (new,) = set(seen.iterdir()) - before
        return new.read_text()

    first = await session_of_run()
    assert await session_of_run() == first  # warm: the same session
    (root / "result.edgelist").write_text("what a test wrote, next to the code")
    assert await session_of_run() == first
    (root / "tests" / "helper.py").write_text("VALUE = 2\nEXPECTED = 2\n")
    second = await session_of_run()
    assert second != first  # the source it imported changed
    (root / "tests" / "test_more.py").write_text("def test_new():\n    pass\n")
    rc, out = await dist.run(root, "tests")
    assert rc == 0 and summary(out) == "2 passed", out


async def test_a_session_that_cannot_start_on_the_workers_is_one_error(dist: Dist) -> None:
    """pytest runs here but not in the workers' sessions (a conftest refuses them): one
    clear error with pytest's own exit code, not a failure per test."""
    root = dist.suite("nostart", {
        "conftest.py": """
            import pytest

            def pytest_configure(config):
                if hasattr(config, "workerinput"):
                    raise pytest.UsageError("this suite refuses to run in worker processes")
            """,
        "tests/test_a.py": "def test_a():\n    pass\n\ndef test_b():\n    pass\n"})
    rc, out = await dist.run(root, "tests")
    assert rc == 4, out
    assert "pytest could not start" in out
    assert "this suite refuses to run in worker processes" in out
    assert "FAILED" not in out and "failed" not in summary(out), out


async def test_cancelling_a_running_chunk_stops_its_tests(dist: Dist, tmp_path: Path) -> None:
    """`dtf cancel` of a chunk that is running kills its pytest process (and what the test
    started), ends the task cancelled, and the run reports the chunk's tests as not run."""
    from tests.gates import Gate
    from tests.helpers import until

    gate = Gate(tmp_path / "gate")  # never opened: the test would wait for ever
    started = tmp_path / "started"
    root = dist.suite("cancel", {"tests/test_wait.py": f"""
        import os, pathlib, subprocess, sys

        def test_waits():
            child = subprocess.Popen([sys.executable, "-c", {gate.script()!r}])  # waits too
            pathlib.Path({str(started)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
            exec({gate.script()!r})
        """})
    run = asyncio.create_task(dist.run(root, "tests"))

    async def has_started() -> bool:
        return started.exists()
    await until(has_started, timeout=60, what="the test to start")
    pids = [int(p) for p in started.read_text().split()]
    rc, listed = await dist.run(root, "--status", "running", "--json", command=("tasks",))
    (task,) = [t for t in json.loads(listed) if t["type"] == "test"]
    rc, said = await dist.run(root, task["id"], command=("cancel",))
    assert rc == 0, said
    rc, out = await run
    assert rc == 1, out
    assert f"not run: DTF task {task['id']} ended cancelled" in out
    rc, shown = await dist.run(root, task["id"], "--json", command=("task",))
    assert json.loads(shown)["status"] == "cancelled"

    async def all_gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True
    await until(all_gone, timeout=10, what="the test's process and its child to be killed")
    gate.open()


async def test_a_terminal_sees_what_the_run_waits_for_before_pytests_report(
        dist: Dist) -> None:
    """Only on a terminal: a line saying what the run waits for, erased before pytest's
    own report (pipes, as every other test here reads, get pytest's output alone)."""
    import pty

    from tests.gates import Gate

    gate = Gate(dist.tmp / "tty-gate")  # the test ends when this test has seen the line
    root = dist.suite("tty", {"tests/test_slow.py": f"""
        import fcntl

        def test_slow():
            fcntl.flock(open({str(gate.path)!r}, "rb"), fcntl.LOCK_SH)
    """})
    env = {**os.environ, "DTF_SERVER": dist.url, "DTF_TOKEN": dist.token,
           "DTF_DATA_DIR": str(dist.tmp / "nodata"), "COLUMNS": "120"}
    env.pop("PYTEST_ADDOPTS", None)
    primary, secondary = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "run", "pytest", cwd=root, env=env,
        stdout=secondary, stderr=secondary)
    os.close(secondary)

    def read_until(marker: bytes | None, out: bytes = b"") -> bytes:
        """Until ``marker`` was printed (None: until the writer has gone)."""
        with contextlib.suppress(OSError):  # EIO once the writer has gone
            while marker is None or marker not in out:
                chunk = os.read(primary, 4096)
                if not chunk:
                    break
                out += chunk
        return out

    out = await asyncio.to_thread(read_until, b"waiting for the first results")
    gate.open()  # bounded by the pytest timeout: the line shows while the test waits
    out = await asyncio.to_thread(read_until, None, out)
    os.close(primary)
    assert await proc.wait() == 0, out.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))  # no colours
    assert "waiting for the first results" in text, text
    assert "1 passed" in text and "test_slow.py ." in text
    # erased before pytest's report: what follows the waiting line is blanks, then "\r"
    after = text.rsplit("waiting for the first results", 1)[1]
    assert re.match(r"^ \(\d+s\)\r +\r", after), repr(after[:40])
