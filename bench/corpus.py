"""Real projects' own test suites, per test: is `dtf run pytest` exactly pytest, and how fast?

    python bench/corpus.py [--suites jinja2,click] [--dir DIR] [--workers 2] [--no-serial]

For each suite of ``bench/corpus/suites.tsv`` (six real PyPI projects, pinned), this
prepares its venv and source tree (``bench/corpus/prepare.sh``, idempotent; needs the
package registry the first time), installs this DTF into that venv, and runs, from the
suite's own venv and directory, with the suite's own arguments:

- plain ``pytest`` (the reference),
- ``pytest -n W`` (pytest-xdist, the speed baseline),
- ``dtf run pytest`` on a fresh ``dtf up --workers W --slots 1``: cold (no warm session, no
  duration history), then warm (the same command again);
- then, on the same stack, ``pytest --dtf`` and ``dtf ci`` (compared, not timed).

It compares every run with plain pytest test by test: the same node ids, the same outcome
of each phase, the same failure and skip text (paths, times and addresses normalised), the
same exit code, the same summary counts and the same JUnit XML test cases. Every
difference is printed. The last line is
JSON: per suite ``{"identical": bool, "warm_vs_xdist": r, "cold_vs_xdist": r, ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = HERE / "corpus"
DEFAULT_DIR = Path(os.environ.get("DTF_CORPUS_DIR") or Path.home() / ".cache" / "dtf" / "corpus")
RUN_TIMEOUT_S = 1800


@dataclass
class Suite:
    name: str
    run_dir: str
    args: list[str]
    expected: dict[str, int]

    @classmethod
    def all(cls) -> dict[str, Suite]:
        with open(CORPUS / "suites.tsv", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return {r["name"]: cls(r["name"], r["run_dir"], r["pytest_args"].split(),
                               {k: int(r[k]) for k in ("passed", "failed", "skipped",
                                                       "xfailed", "deselected")})
                for r in rows}


@dataclass
class Run:
    label: str
    seconds: float
    code: int
    summary: str
    outcomes: dict[str, Any] = field(default_factory=dict)  # nodeid -> per-phase results
    collect: dict[str, Any] = field(default_factory=dict)
    exit_status: int | None = None
    tail: str = ""


# --- preparing ----------------------------------------------------------------------------

def prepare(target: Path, name: str) -> None:
    subprocess.run(["bash", str(CORPUS / "prepare.sh"), str(target), name], check=True,
                   stdout=sys.stderr)


def ensure_dtf(venv: Path) -> None:
    """This checkout of DTF in the suite's venv (editable, so it is always this one), with
    the dependencies its pyproject.toml names now."""
    import hashlib

    py = venv / "bin" / "python"
    stamp = venv / ".dtf-pyproject"
    wanted = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    probe = subprocess.run(
        [str(py), "-c", "import cli.pytest.plugin as p; print(p.__file__)"],
        capture_output=True, text=True)
    if (probe.returncode == 0 and probe.stdout.strip().startswith(str(REPO))
            and stamp.exists() and stamp.read_text() == wanted):
        return
    print(f"corpus: installing DTF into {venv}", file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", str(REPO)], check=True,
                   stdout=sys.stderr)
    stamp.write_text(wanted)


# --- running ------------------------------------------------------------------------------

def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DTF_", "PYTEST_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(HERE)  # the outcome recorder
    return env


# pytest's last line, with or without its rule (-q): "2 failed, 3 passed in 1.2s"
SUMMARY = re.compile(r"^(?:=+ )?((?:\d+ [a-z]+(?:, )?)+|no tests ran) in [0-9.]+s"
                     r"(?: \([0-9:]+\))?(?: =+)?$")


def run(label: str, argv: list[str], cwd: Path, env: dict[str, str], out_dir: Path,
        junit: bool = False) -> Run:
    outcomes_file = out_dir / f"{label}.jsonl"
    env = {**env, "DTF_BENCH_OUTCOMES": str(outcomes_file)}
    extra = ["-p", "dtf_bench_outcomes"]
    if junit:
        extra.append(f"--junit-xml={out_dir / (label + '.xml')}")
    t0 = time.perf_counter()
    proc = subprocess.run([*argv, *extra], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          errors="replace")
    seconds = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    (out_dir / f"{label}.out").write_text(text)
    lines = [m.group(1) for ln in text.splitlines() if (m := SUMMARY.match(ln.strip()))]
    result = Run(label, seconds, proc.returncode, lines[-1] if lines else "(no summary)",
                 tail="\n".join(ln[:300] for ln in text.splitlines()[-15:]))
    if outcomes_file.exists():
        for line in outcomes_file.read_text().splitlines():
            rec = json.loads(line)
            if rec["kind"] == "test":
                result.outcomes.setdefault(rec["nodeid"], []).append(
                    (rec["when"], rec["outcome"], rec["wasxfail"], rec["text"],
                     rec["sections"]))
            elif rec["kind"] == "collect":
                result.collect[rec["nodeid"]] = (rec["outcome"], rec["text"])
            elif rec["kind"] == "exit":
                result.exit_status = rec["code"]
    return result


@contextlib.contextmanager
def stack(venv: Path, workers: int, tmp: Path) -> Iterator[dict[str, str]]:
    """`dtf up --workers W --slots 1` from the suite's venv, on a free port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp / "stack"
    env = {**clean_env(), "DTF_CACHE_DIR": str(tmp / "cache")}
    log = open(tmp / "stack.log", "wb")
    proc = subprocess.Popen(
        [str(venv / "bin" / "dtf"), "up", "--data-dir", str(data), "--port", str(port),
         "--workers", str(workers), "--slots", "1", "--no-http"],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"DTF ready" not in (tmp / "stack.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dtf up did not get ready:\n"
                                   + (tmp / "stack.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield {**clean_env(), "DTF_SERVER": f"nats://127.0.0.1:{port}",
               "DTF_TOKEN_FILE": str(data / "admin.jwt")}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# --- comparing ----------------------------------------------------------------------------

_NORMALISE = [
    (re.compile(r"/tmp/pytest-of-[^/\s]+/pytest-\d+(/[^/\s]+)*"), "<tmp>"),
    (re.compile(r"/tmp/[\w.-]+"), "<tmp>"),
    (re.compile(r"0x[0-9a-fA-F]{6,16}"), "0x?"),
    (re.compile(r"\d+\.\d+s\b"), "?s"),
    (re.compile(r"\bpid[= ]\d+"), "pid ?"),
    (re.compile(r"\bline \d+, in <lambda>"), "line ?, in <lambda>"),
]


def normalise(text: str, root: str) -> str:
    text = text.replace(root, "<root>")
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text


def counts(summary: str) -> dict[str, int]:
    return {k.rstrip("s"): int(n) for n, k in re.findall(r"(\d+) (\w+)", summary)}


def compare(ref: Run, other: Run, root: str) -> list[str]:
    """Every difference of ``other`` from ``ref`` (plain pytest). Against pytest-xdist (the
    reference of ``--no-serial``) only outcomes count: xdist's own texts and counts differ
    from pytest's (``[gw0] linux -- Python ...`` lines, no deselected count)."""
    diffs: list[str] = []
    texts = ref.label != "xdist"
    if ref.code != other.code:
        diffs.append(f"exit code {other.code}, plain pytest {ref.code}")
    mine, theirs = counts(other.summary), counts(ref.summary)
    for key in ("deselected", "warning", "skipped"):  # xdist drops these; dtf must not
        mine.setdefault(key, 0)
        theirs.setdefault(key, 0)
        if not texts:
            mine.pop(key)
            theirs.pop(key)
    if mine != theirs:
        diffs.append(f"summary '{other.summary}', plain pytest '{ref.summary}'")
    missing = ref.outcomes.keys() - other.outcomes.keys()
    extra = other.outcomes.keys() - ref.outcomes.keys()
    for nodeid in sorted(missing)[:20]:
        diffs.append(f"{nodeid}: not reported (plain pytest: {phases(ref.outcomes[nodeid])})")
    for nodeid in sorted(extra)[:20]:
        diffs.append(f"{nodeid}: reported, but plain pytest has no such test")
    shown = 0
    for nodeid in sorted(ref.outcomes.keys() & other.outcomes.keys()):
        a = [(w, o, x, normalise(t, root) if texts else "", s if texts else [])
             for w, o, x, t, s in ref.outcomes[nodeid]]
        b = [(w, o, x, normalise(t, root) if texts else "", s if texts else [])
             for w, o, x, t, s in other.outcomes[nodeid]]
        if a == b:
            continue
        shown += 1
        if shown <= 30:
            if [p[:3] for p in a] != [p[:3] for p in b]:
                diffs.append(f"{nodeid}: {phases(other.outcomes[nodeid])}, plain pytest "
                             f"{phases(ref.outcomes[nodeid])}")
            else:
                diffs.append(f"{nodeid}: same outcome, other text:\n"
                             + first_difference(a, b))
    if shown > 30:
        diffs.append(f"... {shown - 30} more tests differ")
    for nodeid in sorted(ref.collect.keys() ^ other.collect.keys())[:10] if texts else ():
        diffs.append(f"collection of {nodeid}: {other.collect.get(nodeid, ('ok',))[0]}, "
                     f"plain pytest {ref.collect.get(nodeid, ('ok',))[0]}")
    return diffs


def junit_cases(path: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    """A JUnit file's test cases with what pytest wrote of each, times left out."""
    import xml.etree.ElementTree as ET

    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        out[key] = tuple(f"{c.tag}:{c.get('type', '')}:{c.get('message', '')}"
                         for c in case if c.tag not in ("system-out", "system-err"))
    return out


def compare_junit(ref: Path, other: Path, root: str) -> list[str]:
    a = {k: tuple(normalise(x, root) for x in v) for k, v in junit_cases(ref).items()}
    b = {k: tuple(normalise(x, root) for x in v) for k, v in junit_cases(other).items()}
    diffs = [f"junit {'::'.join(k)}: {b.get(k)}, plain pytest {a.get(k)}"
             for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    return diffs[:20]


def phases(records: list[Any]) -> str:
    return ",".join(f"{w}:{o}" + ("(xfail)" if x is not None else "") for w, o, x, _, _ in records)


def first_difference(a: list[Any], b: list[Any]) -> str:
    for pa, pb in zip(a, b, strict=False):
        if pa != pb:
            la, lb = pa[3].splitlines(), pb[3].splitlines()
            for i, (x, y) in enumerate(zip(la, lb, strict=False)):
                if x != y:
                    return f"    line {i + 1}: {y[:160]!r}\n    plain:   {x[:160]!r}"
            if pa[4] != pb[4]:
                return f"    sections {pb[4]}, plain {pa[4]}"
            return f"    {len(lb)} lines, plain {len(la)} lines"
    return "    (different number of phases)"


# --- main ---------------------------------------------------------------------------------

def bench_suite(suite: Suite, base: Path, workers: int, serial: bool, out: Path,
                entries: bool = True, repeat: int = 1) -> dict[str, Any]:
    """Each comparison on every repetition; times are the medians of ``repeat`` rounds
    (xdist, then cold and warm on a fresh stack) run one after the other."""
    venv = base / suite.name / "venv"
    cwd = base / suite.name / suite.run_dir
    root = str(cwd)
    py = str(venv / "bin" / "python")
    common = ["-p", "no:cacheprovider", *suite.args]
    env = clean_env()
    print(f"\n=== {suite.name} ===", file=sys.stderr)
    ref = run("serial", [py, "-m", "pytest", *common], cwd, env, out, junit=True) \
        if serial else None
    times: dict[str, list[float]] = {"xdist": [], "cold": [], "warm": []}
    identical = True
    for _ in range(repeat):
        runs: dict[str, Run] = {}
        runs["xdist"] = run("xdist", [py, "-m", "pytest", "-n", str(workers), *common], cwd,
                            env, out)
        with tempfile.TemporaryDirectory(prefix=f"dtf-corpus-{suite.name}-") as tmp:
            with stack(venv, workers, Path(tmp)) as dtf_env:
                dtf = [str(venv / "bin" / "dtf"), "run", "pytest", *common]
                runs["cold"] = run("cold", dtf, cwd, dtf_env, out, junit=True)
                runs["warm"] = run("warm", dtf, cwd, dtf_env, out, junit=True)
                if entries:  # the other ways in, warm: `pytest --dtf` and `dtf ci`
                    runs["plugin"] = run("plugin", [py, "-m", "pytest", "--dtf", *common],
                                         cwd, dtf_env, out, junit=True)
                    runs["ci"] = run("ci", [str(venv / "bin" / "dtf"), "ci", "--reports-dir",
                                            tmp + "/ci-reports", "--", *common],
                                     cwd, dtf_env, out)
                    shutil.copy(Path(tmp) / "ci-reports" / "junit.xml", out / "ci.xml")
        for label in times:
            times[label].append(runs[label].seconds)
        identical = report(suite, ref or runs["xdist"], runs, out, root) and identical
        entries = False  # the other ways in once: they are compared, not timed
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"identical": identical,
              "warm_vs_xdist": round(med["warm"] / med["xdist"], 3),
              "cold_vs_xdist": round(med["cold"] / med["xdist"], 3),
              "xdist_s": round(med["xdist"], 2), "cold_s": round(med["cold"], 2),
              "warm_s": round(med["warm"], 2), "rounds": repeat}
    if ref is not None:
        result["serial_s"] = round(ref.seconds, 2)
        result["warm_vs_serial"] = round(med["warm"] / ref.seconds, 3)
    return result


def report(suite: Suite, ref: Run, runs: dict[str, Run], out: Path, root: str) -> bool:
    identical = True
    for label in [k for k in ("cold", "warm", "plugin", "ci") if k in runs]:
        diffs = compare(ref, runs[label], root)
        if ref.label == "serial" and (out / f"{label}.xml").exists():
            diffs += compare_junit(out / "serial.xml", out / f"{label}.xml", root)
        identical = identical and not diffs
        status = "identical to plain pytest" if not diffs else f"{len(diffs)} differences"
        print(f"{suite.name} {label}: {runs[label].seconds:.1f}s, {status}", file=sys.stderr)
        for d in diffs:
            print(f"  {d}", file=sys.stderr)
        if diffs:
            print("  last lines:\n    " + runs[label].tail.replace("\n", "\n    "),
                  file=sys.stderr)
    for r in [ref, *runs.values()]:
        print(f"{suite.name} {r.label:6s} {r.seconds:7.1f}s  exit {r.code}  {r.summary}",
              file=sys.stderr)
    return identical


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suites", default="", help="comma-separated names (default: all)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                   help=f"where the suites are prepared (default {DEFAULT_DIR})")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-serial", action="store_true",
                   help="compare with pytest -n W instead of plain pytest (faster)")
    p.add_argument("--keep", type=Path, default=None, help="keep every run's output here")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="N rounds of xdist, cold and warm; times are medians (small suites "
                        "vary by a quarter from run to run)")
    p.add_argument("--only-run", action="store_true",
                   help="compare `dtf run pytest` only (skip `pytest --dtf` and `dtf ci`)")
    args = p.parse_args(argv)
    suites = Suite.all()
    names = [n for n in args.suites.split(",") if n] or list(suites)
    unknown = [n for n in names if n not in suites]
    if unknown:
        p.error(f"unknown suites {unknown}; known: {', '.join(suites)}")
    results: dict[str, Any] = {}
    out_root = args.keep or Path(tempfile.mkdtemp(prefix="dtf-corpus-out-"))
    try:
        for name in names:
            prepare(args.dir, name)
            ensure_dtf(args.dir / name / "venv")
            out = out_root / name
            out.mkdir(parents=True, exist_ok=True)
            results[name] = bench_suite(suites[name], args.dir, args.workers,
                                        not args.no_serial, out, not args.only_run,
                                        max(1, args.repeat))
    finally:
        if args.keep is None:
            shutil.rmtree(out_root, ignore_errors=True)
    print(json.dumps(results))
    return 0 if all(r["identical"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
