"""The report CI generates: a benchmark history with a 10% regression in one series of three
goes through the real log and projector, and `dtf report` (the CLI, as a user runs it)
shows the regression and nothing for the two series of noise. Its HTML is one file, its
PNGs are PNGs, its Markdown fits a PR comment."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.history import Story, history
from tests.integration.harness import Harness
from tests.integration.test_benchmarks import projected, stored
from tests.integration.test_projector import append

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
__all__ = ["projected"]  # the stack fixture, `h`
SHOTS = os.environ.get("DTF_SCREENSHOTS")  # where CI keeps artifacts (.ci/run sets it)


async def dtf(h: Harness, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process (the agents answer in this test's event loop)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli.main", *args, "--server", h.url],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())})


async def test_the_report_shows_the_regression_and_not_the_noise(
        h: Harness, tmp_path: Path) -> None:
    await append(h.log, history(Story(series=3, points=40, step_at=20, seed=5))[1:])
    await stored(h)
    out = Path(SHOTS) / "report" if SHOTS else tmp_path / "report"
    shutil.rmtree(out, ignore_errors=True)  # CI keeps the folder between runs: only ours
    out.mkdir(parents=True)
    compare = ("--baseline", "run-5", "--baseline", "run-6", "--candidate", "run-30",
               "--candidate", "run-31")

    md = await dtf(h, tmp_path, "report", "--format", "md", *compare)
    assert md.returncode == 0, md.stderr
    text = md.stdout
    assert "3 series of `wall_s`" in text and "1 regressions" in text, text
    changes = text.split("### Change points")[1].split("###")[0]
    assert "m0 ·" in changes and "m1" not in changes and "m2" not in changes, changes
    compared = text.split("### Baseline against candidate runs")[1].split("###")[0]
    rows = [r for r in compared.splitlines() if r.startswith("| m")]
    assert rows[0].startswith("| m0 ·") and "**regression**" in rows[0], rows
    assert all("unchanged" in r for r in rows[1:]), rows

    html = await dtf(h, tmp_path, "report", "--format", "html", "-o", str(out / "report.html"),
               "--png", str(out / "charts"))
    assert html.returncode == 0, html.stderr
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 3 and "(alarm)" in page and "src=" not in page
    pngs = sorted((out / "charts").glob("*.png"))
    assert len(pngs) == 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)

    trends = await dtf(h, tmp_path, "trends", "--json")
    assert trends.returncode == 1  # an alarm: CI can gate on it
    report = json.loads(trends.stdout)
    assert [(s["key"]["model"], s["alarm"]) for s in report["series"]] == [
        ("m0", True), ("m1", False), ("m2", False)]
    quiet = await dtf(h, tmp_path, "trends", "--model", "m1")
    assert quiet.returncode == 0 and "ALARM" not in quiet.stdout, quiet.stdout


async def test_a_users_callable_benchmarked_from_the_cli_and_queried_as_csv(
        h: Harness, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "mybench.py").write_text(
        "def run(batch_size, precision):\n"
        "    sum(range(batch_size * 10_000))\n"
        "    return {'items': batch_size}\n")
    sub = await dtf(h, project, "bench", "--callable", "mybench:run", "--model", "summer",
                    "--batch-sizes", "1,4", "--iterations", "4", "--json")
    assert sub.returncode == 0, sub.stderr
    task_id = json.loads(sub.stdout)["id"]
    assert (await h.wait_status(task_id, {"succeeded", "failed"}, 120)).status == "succeeded"
    await stored(h)
    csv = await dtf(h, project, "results", "query", "--model", "summer", "--csv")
    assert csv.returncode == 0, csv.stderr
    header, *rows = csv.stdout.strip().splitlines()
    assert header.startswith("timestamp,run_id,task_id,name,model,workload")
    assert [r.split(",")[4:8] for r in rows] == [
        ["summer", "callable:mybench:run", "fp32", "1"], ["summer", "callable:mybench:run",
                                                         "fp32", "4"]]
    sql = await dtf(h, project, "results", "query", "--sql",
                    "SELECT metric, mean FROM bench_metrics WHERE metric = 'items' "
                    "ORDER BY batch_size", "--json")
    assert json.loads(sql.stdout) == [{"metric": "items", "mean": 1.0},
                                      {"metric": "items", "mean": 4.0}]
    bad = await dtf(h, project, "results", "query", "--sql", "DROP TABLE tasks")
    assert bad.returncode == 2 and "one SELECT" in bad.stderr and "Traceback" not in bad.stderr
