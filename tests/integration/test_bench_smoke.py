"""bench/e2e.py runs end to end and prints its JSON line (a smoke test, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"tasks_per_s", "p50_ms", "p99_ms", "naive_tasks_per_s", "ceiling_tasks_per_s",
        "ratio"}


def test_e2e_bench_prints_its_json_line() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "e2e.py"), "--tasks", "200", "--samples", "5",
         "--ref-tasks", "20", "--json"],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["tasks"] == 200 and result["tasks_per_s"] > 0
