"""pytest, pytest-xdist and `dtf run pytest` on the same suite, in the same run.

    python bench/pytest_vs_xdist.py [--suite DIR] [--workers 2] [--json]

Without --suite it writes a synthetic suite of mixed durations (a few hundred tests) and a
suite of 2,000 trivial tests (the per-test overhead). It starts its own secure DTF stack
with W local workers of one slot each, then times:
- serial: `pytest`;
- xdist: `pytest -n W`;
- dtf cold: `dtf run pytest` on the fresh stack (no history: split by file, sessions start);
- dtf warm: the same again (split by measured durations, warm sessions).
It checks that all of them report the same outcome counts. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from agents.natsserver import free_port
from agents.supervisor import Stack

REPO = str(Path(__file__).resolve().parent.parent)
SUMMARY = re.compile(r"^=*\s*(.*?) in [0-9.]+s", re.M)


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


def counts(output: str) -> dict[str, int]:
    found = SUMMARY.findall(output)
    out: dict[str, int] = {}
    for part in (found[-1] if found else "").split(","):
        m = re.match(r"\s*(\d+) (\w+)", part)
        if m:
            key = m.group(2).rstrip("s") if m.group(2) in ("errors", "warnings") else m.group(2)
            if key != "warning":
                out[key] = int(m.group(1))
    return out


async def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict[str, int],
                                                                             str]:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    elapsed = time.perf_counter() - start
    text = out.decode()
    return elapsed, counts(text), text


async def three_ways(suite: Path, workers: int, env: dict[str, str]) -> dict[str, object]:
    py = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    dtf = [sys.executable, "-m", "cli.main", "run", "pytest", "-q", "-p", "no:cacheprovider"]
    serial_s, serial_c, _ = await timed(py, suite, env)
    xdist_s, xdist_c, _ = await timed([*py, "-n", str(workers)], suite, env)
    cold_s, cold_c, cold_out = await timed(dtf, suite, env)
    warm_s, warm_c, warm_out = await timed(dtf, suite, env)
    equal = serial_c == xdist_c == cold_c == warm_c and bool(serial_c)
    if not equal:
        print(f"counts differ: serial {serial_c} xdist {xdist_c} dtf cold {cold_c} "
              f"dtf warm {warm_c}\n--- dtf cold ---\n{cold_out[-2000:]}\n--- dtf warm ---\n"
              f"{warm_out[-2000:]}", file=sys.stderr)
    return {"serial_s": round(serial_s, 3), "xdist_s": round(xdist_s, 3),
            "dtf_cold_s": round(cold_s, 3), "dtf_s": round(warm_s, 3),
            "counts": serial_c, "counts_equal": equal}


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-pytest-") as tmp:
        base = Path(tmp)
        stack = Stack(data_dir=base / "stack", port=free_port(), workers=args.workers, slots=1)
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        try:
            await stack.wait_ready()
            env = {**os.environ, "DTF_SERVER": stack.url,
                   "PYTHONPATH": REPO}
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
                result["counts_equal"] = bool(result["counts_equal"] and t["counts_equal"])
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
              f"counts equal: {result['counts_equal']}")
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
