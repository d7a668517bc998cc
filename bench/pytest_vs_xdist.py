"""pytest, pytest-xdist and `dtf run pytest` on the same suite, in the same run.

    python bench/pytest_vs_xdist.py [--suite DIR] [--workers 2] [--json]

Without --suite it writes a synthetic suite of mixed durations (a few hundred tests) and a
suite of 2,000 trivial tests (the per-test overhead). It starts its own secure DTF stack
with W local workers of one slot each, then times:
- serial: `pytest`;
- xdist: `pytest -n W`;
- dtf cold: `dtf run pytest` on the fresh stack (no history: split by file, sessions start);
- dtf warm: the same again (split by measured durations, warm sessions).
It compares dtf's runs with serial pytest test by test (``bench/corpus.py``'s comparison:
outcome of every phase, failure text, exit code, summary). The last line is JSON. Real
projects' suites: ``bench/corpus.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from agents.host.supervisor import Stack
from agents.nats.server import free_port
from bench.corpus import Run, compare, run

REPO = str(Path(__file__).resolve().parent.parent)


def write_mixed(root: Path, n: int = 300, seed: int = 7) -> None:
    rng = random.Random(seed)
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    per_file = 30
    for f in range(n // per_file):
        lines = ["import time", "import pytest", ""]
        for t in range(per_file):
            r = rng.random()
            delay = 0.001 if r < 0.7 else (0.02 if r < 0.95 else 0.15)
            kind = rng.random()
            if kind < 0.02:
                lines += [f"def test_{t}():", f"    time.sleep({delay})", "    assert 0", ""]
            elif kind < 0.04:
                lines += ["@pytest.mark.skip(reason='bench')", f"def test_{t}():",
                          "    pass", ""]
            else:
                lines += [f"def test_{t}():", f"    time.sleep({delay})", ""]
        (root / "tests" / f"test_mixed_{f}.py").write_text("\n".join(lines))


def write_trivial(root: Path, n: int = 2000) -> None:
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for f in range(n // 100):
        body = "\n".join(f"def test_{t}():\n    pass\n" for t in range(100))
        (root / "tests" / f"test_trivial_{f}.py").write_text(body)


async def three_ways(suite: Path, workers: int, env: dict[str, str]) -> dict[str, object]:
    """Serial, xdist, dtf cold and warm; dtf's runs compared with serial test by test."""
    py = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    dtf = [sys.executable, "-m", "cli.main", "run", "pytest", "-q", "-p", "no:cacheprovider"]
    out = suite.parent / f"{suite.name}-out"
    out.mkdir(exist_ok=True)

    async def timed(label: str, argv: list[str]) -> Run:
        return await asyncio.to_thread(run, label, argv, suite, env, out)

    serial = await timed("serial", py)
    xdist = await timed("xdist", [*py, "-n", str(workers)])
    cold = await timed("cold", dtf)
    warm = await timed("warm", dtf)
    diffs = compare(serial, cold, str(suite)) + compare(serial, warm, str(suite))
    for d in diffs:
        print(f"  {d}", file=sys.stderr)
    return {"serial_s": round(serial.seconds, 3), "xdist_s": round(xdist.seconds, 3),
            "dtf_cold_s": round(cold.seconds, 3), "dtf_s": round(warm.seconds, 3),
            "summary": serial.summary, "tests": len(serial.outcomes),
            "identical": not diffs and bool(serial.outcomes)}


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-pytest-") as tmp:
        base = Path(tmp)
        stack = Stack(data_dir=base / "stack", port=free_port(), workers=args.workers, slots=1)
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        try:
            await stack.wait_ready()
            env = {**os.environ, "DTF_SERVER": stack.url,
                   "PYTHONPATH": os.pathsep.join((REPO, str(Path(REPO) / "bench")))}
            env.pop("PYTEST_ADDOPTS", None)
            if stack.creds:
                env["DTF_TOKEN"] = stack.creds.admin.read_text().strip()
            if args.suite:
                suite = args.suite
            else:
                suite = base / "mixed"
                write_mixed(suite, args.tests)
            result = await three_ways(suite, args.workers, env)
            if not args.suite and args.trivial:
                trivial = base / "trivial"
                write_trivial(trivial, args.trivial)
                t = await three_ways(trivial, args.workers, env)
                result["trivial"] = t
                result["trivial_tests"] = args.trivial
                result["trivial_dtf_over_serial"] = round(
                    float(t["dtf_s"]) / float(t["serial_s"]), 3)  # type: ignore[arg-type]
                result["identical"] = bool(result["identical"] and t["identical"])
        finally:
            supervisor.cancel()
            await stack.stop()
    result["workers"] = args.workers
    result["dtf_over_xdist"] = round(float(result["dtf_s"]) / float(result["xdist_s"]), 3)  # type: ignore[arg-type]
    result["dtf_cold_over_xdist"] = round(
        float(result["dtf_cold_s"]) / float(result["xdist_s"]), 3)  # type: ignore[arg-type]
    return result


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=None, help="a test directory of your own")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tests", type=int, default=300, help="synthetic mixed suite size")
    p.add_argument("--trivial", type=int, default=2000,
                   help="trivial tests for the per-test overhead (0: skip)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args()
    if args.suite:
        args.suite = Path(args.suite).resolve()
    result = asyncio.run(main(args))
    if not args.json:
        print(f"serial {result['serial_s']}s, xdist -n {args.workers} {result['xdist_s']}s, "
              f"dtf cold {result['dtf_cold_s']}s, dtf warm {result['dtf_s']}s; "
              f"dtf/xdist {result['dtf_over_xdist']} (cold {result['dtf_cold_over_xdist']}); "
              f"identical test by test: {result['identical']}")
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
