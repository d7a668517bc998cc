"""`dtf run pytest`, `pytest --dtf` and `dtf ci` give what plain pytest gives, test by test,
on a suite of the cases distributed runners get wrong (``nasty/``): the outcome of every
phase, the failure and skip text, JUnit XML, the exit code and the summary counts. A warm
run must not see what the run before it left behind (``test_order.py`` switches a
library-wide mode on purpose)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from bench.corpus import Run, compare, compare_junit
from bench.corpus import run as bench_run
from tests.dist import Dist

pytestmark = pytest.mark.anyio

NASTY = Path(__file__).with_name("nasty")
BENCH = Path(__file__).resolve().parents[3] / "bench"
ARGS = ("--doctest-modules",)


def suite(tmp: Path) -> Path:
    root = tmp / "nasty"
    shutil.copytree(NASTY, root)
    return root


async def run(label: str, argv: list[str], root: Path, env: dict[str, str]) -> Run:
    out = root.parent / "out"
    out.mkdir(exist_ok=True)
    full = {**os.environ, **env, "PYTHONPATH": str(BENCH)}
    full.pop("PYTEST_ADDOPTS", None)
    return await asyncio.to_thread(bench_run, label, argv, root, full, out)


def plain(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *ARGS, *args]


def dtf(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "run", "pytest", *ARGS, *args]


def stack_env(dist: Dist) -> dict[str, str]:
    return {"DTF_SERVER": dist.url, "DTF_TOKEN": dist.token,
            "DTF_DATA_DIR": str(dist.tmp / "nodata")}


def same(ref: Run, other: Run, root: Path) -> None:
    diffs = compare(ref, other, str(root))
    assert not diffs, f"{other.label} differs from plain pytest:\n" + "\n".join(diffs) \
        + "\n--- its last lines:\n" + other.tail


async def test_every_way_in_gives_plain_pytests_results(dist: Dist) -> None:
    root = suite(dist.tmp)
    env = stack_env(dist)
    ref = await run("plain", plain("--junit-xml=plain.xml"), root, env)
    assert ref.code == 1 and len(ref.outcomes) > 40
    assert "14 failed" in ref.summary and "3 errors" in ref.summary

    cold = await run("cold", dtf("--junit-xml=cold.xml"), root, env)
    same(ref, cold, root)
    assert not compare_junit(root / "plain.xml", root / "cold.xml", str(root))
    warm = await run("warm", dtf(), root, env)  # the mode test_order.py left on is gone
    same(ref, warm, root)
    plugin = await run("plugin", [sys.executable, "-m", "pytest", "--dtf", *ARGS], root, env)
    same(ref, plugin, root)
    ci = await run("ci", [sys.executable, "-m", "cli.main", "ci", "--", *ARGS], root, env)
    same(ref, ci, root)
    assert not compare_junit(root / "plain.xml", root / "dtf-reports" / "junit.xml", str(root))


async def test_verbosity_traceback_styles_and_summaries_are_pytests(dist: Dist) -> None:
    root = suite(dist.tmp)
    env = stack_env(dist)
    for args in (("-vv", "-rA", "--tb=short"), ("-l", "--tb=long", "-q"), ("--tb=line",),
                 ("-k", "lists or dicts or strings", "-v", "--durations=3")):
        ref = await run("plain", plain(*args), root, env)
        got = await run("dtf", dtf(*args), root, env)
        same(ref, got, root)
        text = (root.parent / "out" / "dtf.out").read_text()
        if "-vv" in args:
            assert "Full diff:" in text and "Use -v to get more diff" not in text
        if "--durations=3" in args:
            assert "slowest 3 durations" in text


async def test_exitfirst_stops_the_run_after_the_first_failure(dist: Dist) -> None:
    """Tests run in parallel, so which failure comes first is not plain pytest's; what
    -x means is: exit 1 after exactly one failure, the rest not run."""
    root = suite(dist.tmp)
    got = await run("dtf", dtf("-x", "-p", "no:warnings"), root, stack_env(dist))
    text = (root.parent / "out" / "dtf.out").read_text()
    assert got.code == 1 and "stopping after 1 failures" in text
    assert "1 failed" in got.summary or "1 error" in got.summary
    assert sum(1 for phases in got.outcomes.values()
               if any(o == "failed" for _, o, x, _, _ in phases if x is None)) == 1
