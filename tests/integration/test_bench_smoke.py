"""The benchmarks run end to end and print their JSON line (smoke tests, not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"tasks_per_s", "p50_ms", "p99_ms", "naive_tasks_per_s", "ceiling_tasks_per_s",
        "ratio", "floor_p50_ms", "p50_over_floor"}


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


def _bench(script: str, *args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--json"],
                         capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_scheduler_bench_places_everything() -> None:
    result = _bench("scheduler.py", "--workers", "50", "--queued", "2000")
    assert result["placed"] == 2000
    assert {"us_per_placement", "rss_mb"} <= set(result)


def test_replay_bench_is_deterministic() -> None:
    result = _bench("replay.py", "--events", "3000")
    assert result["deterministic"] is True and result["events"] == 3000
    assert "replay_events_per_s" in result


def test_failover_bench_prints_its_three_figures() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "failover.py"), "--tasks", "400",
         "--replay-events", "3000", "--cold-events", "5000", "--json"],
        capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"failover_s", "replay_events_per_s", "cold_start_s"} <= set(result)
    assert result["cold_equals_full"] is True and result["failover_s"] is not None


def test_analytics_bench_finds_every_stepped_series_and_no_other() -> None:
    result = _bench("analytics.py", "--events", "900", "--series", "40", "--points", "60")
    assert {"ingest_rows_per_s", "trend_1m_s"} <= set(result)
    assert result["trend_rows"] == 40 * 60
    assert result["trend_alarms"] == result["trend_series_stepped"] == 4
