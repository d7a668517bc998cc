"""The statistics on known synthetic series: an injected 10% slowdown in realistic noise is
found where it is; pure noise raises no alarm in at least 95% of seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from agents.worker.hardware.parse import CPU_FLAGS
from bench.history import T0, Story, history, noisy
from dtf_core.errors import InvalidInput
from dtf_core.events.worker import Capabilities
from projections.schema import TABLES
from projections.stats import anomalies, change_points, compare, forecast
from projections.tables import TableWriter, create_tables, write_batch
from projections.trends import TrendQuery, trends

SEEDS = range(100)


def realistic(seed: int, n: int = 60) -> np.ndarray:
    """3% log-normal spread and 2% of points 10-40% slow (a busy moment)."""
    return noisy(np.random.default_rng(seed), n, 0.1, 0.03, 0.02)


def test_a_10_percent_slowdown_is_flagged_where_it_happened() -> None:
    found = 0
    for seed in SEEDS:
        x = realistic(seed)
        x[30:] *= 1.10
        cps = change_points(x)
        assert cps, f"seed {seed}: the slowdown was missed"
        found += any(abs(c.index - 30) <= 2 and 0.05 < c.change < 0.15 for c in cps)
    assert found >= 95, found


def test_pure_noise_raises_no_alarm_in_95_percent_of_seeds() -> None:
    alarms = sum(bool(change_points(realistic(1000 + seed))) for seed in range(200))
    assert alarms <= 10, alarms
    gaussian = [np.random.default_rng(seed).normal(0.1, 0.003, 60) for seed in range(200)]
    quiet = sum(not change_points(x) and not anomalies(x) for x in gaussian)
    assert quiet >= 190, quiet


def test_a_single_spike_is_an_anomaly_not_a_change() -> None:
    x = np.random.default_rng(7).normal(0.1, 0.002, 60)
    x[40] = 0.2
    assert change_points(x) == []
    [spike] = anomalies(x)
    assert spike.index == 40 and spike.z > 5


def test_a_drift_is_forecast_past_its_threshold_and_a_flat_series_is_not() -> None:
    rng = np.random.default_rng(3)
    days = np.arange(40, dtype=float)
    drifting = 0.1 * (1 + 0.004 * days) + rng.normal(0, 0.001, 40)
    fc = forecast(days, drifting, 30, threshold=0.11)
    assert fc is not None and fc.crosses and fc.low > 0.11 and fc.slope > 0
    flat = 0.1 + rng.normal(0, 0.001, 40)
    fc = forecast(days, flat, 30, threshold=0.11)
    assert fc is not None and not fc.crosses and fc.low < fc.value < fc.high
    assert forecast(days[:5], flat[:5], 30) is None  # too few points to say


def test_two_sets_of_runs_compared_with_effect_sizes_and_corrected() -> None:
    rng = np.random.default_rng(11)
    base = [noisy(rng, 50, 0.1, 0.03, 0.0) for _ in range(3)]
    cand = [base[0] * 1.10, noisy(rng, 50, 0.1, 0.03, 0.0), base[2] * 0.90]
    cand[0] = noisy(rng, 50, 0.11, 0.03, 0.0)
    cand[2] = noisy(rng, 50, 0.09, 0.03, 0.0)
    slower, same, faster = compare(list(zip(base, cand, strict=True)))
    assert slower.verdict == "regression" and 0.05 < slower.change < 0.15
    assert slower.cliffs_delta > 0.5 and slower.q_value >= slower.p_value
    assert same.verdict == "unchanged"
    assert faster.verdict == "improvement" and faster.cliffs_delta < -0.5
    false = sum(compare([(noisy(np.random.default_rng(s), 30, 0.1, 0.03, 0.02),
                          noisy(np.random.default_rng(s + 10_000), 30, 0.1, 0.03, 0.02))])[0]
                .verdict != "unchanged" for s in range(200))
    assert false <= 10, false


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    create_tables(c)
    writer = TableWriter()
    for seq, event in enumerate(history(Story(series=3, points=60)), start=1):
        writer.fold(seq, event)
    pending = writer.take()
    assert pending is not None
    write_batch(c, pending)
    return c


def test_trends_flag_the_stepped_series_only(con: duckdb.DuckDBPyConnection) -> None:
    assert {t.name for t in TABLES} >= {"bench_results", "bench_metrics", "hosts"}
    report = trends(con, TrendQuery(), now=T0 + 61 * 86400)
    assert report.series_total == 3
    first, *rest = report.series
    assert first.key["model"] == "m0" and first.alarm  # alarms come first
    [cp] = first.change_points
    assert abs(cp.index - 30) <= 2 and first.change_times[0] >= T0 + 28 * 86400
    assert [s.alarm for s in rest] == [False, False] and all(not s.change_points for s in rest)


def test_trends_compare_runs_by_their_iterations(con: duckdb.DuckDBPyConnection) -> None:
    q = TrendQuery(baseline=["run-10", "run-11"], candidate=["run-40", "run-41"])
    report = trends(con, q, now=T0)
    verdicts = {c.key["model"]: (c.unit, c.comparison.verdict) for c in report.comparisons}
    assert verdicts == {"m0": ("iterations", "regression"), "m1": ("iterations", "unchanged"),
                        "m2": ("iterations", "unchanged")}
    assert report.comparisons[0].key["model"] == "m0"  # regressions first


def test_trends_of_an_empty_history_say_so() -> None:
    c = duckdb.connect()
    create_tables(c)
    report = trends(c, TrendQuery(baseline=["a"], candidate=["b"]), now=T0)
    assert (report.ok, report.series, report.series_total, report.comparisons) == (
        True, [], 0, [])


PB_FILE = Path(__file__).resolve().parents[1] / "data" / "pytest_benchmark.json"


def test_pytest_benchmarks_json_becomes_results_with_its_own_statistics() -> None:
    """A file written by pytest-benchmark 5.3.1 (`pytest --benchmark-json`) on the
    development machine; each benchmark's per-round data cut to 200 rounds to keep it small."""
    from cli.bench_import import import_command

    raw = PB_FILE.read_bytes()
    doc = json.loads(raw)
    cmd = import_command(raw, run_id="nightly")
    assert cmd.import_id == import_command(raw).import_id  # the same file, the same import
    by_name = {r.name: r for r in cmd.results}
    assert sorted(by_name) == ["test_pb.py::test_sort", "test_pb.py::test_sum"]
    stats = doc["benchmarks"][0]["stats"]
    sort = by_name["test_pb.py::test_sort"].result
    [batch] = sort.batches
    assert (batch.wall_s.n, batch.wall_s.mean, batch.wall_s.median, batch.wall_s.std) == (
        stats["rounds"], stats["mean"], stats["median"], stats["stddev"])
    assert batch.wall_s.ci_low < batch.wall_s.mean < batch.wall_s.ci_high
    assert math.isnan(batch.wall_s.p95)  # the file keeps 200 of its rounds: not computed
    assert batch.throughput.mean == pytest.approx(stats["ops"])
    assert by_name["test_pb.py::test_sum"].result.model == "adder"  # from extra_info
    cpu = doc["machine_info"]["cpu"]
    assert sort.provenance.cpu_model == cpu["brand_raw"]
    assert sort.provenance.fingerprint == Capabilities(
        machine=doc["machine_info"]["machine"], cpu_model=cpu["brand_raw"],
        cpu_flags=tuple(f for f in CPU_FLAGS if f in cpu["flags"])).fingerprint
    with pytest.raises(InvalidInput, match="not pytest-benchmark's JSON"):
        import_command(b'{"tasks": []}')


def test_trends_compare_a_commit_with_the_results_before_it(
        con: duckdb.DuckDBPyConnection) -> None:
    from bench.history import commit_of

    at_step = trends(con, TrendQuery(candidate_commit=commit_of(30)), now=T0)
    assert {c.key["model"]: c.comparison.verdict for c in at_step.comparisons} == {
        "m0": "regression", "m1": "unchanged", "m2": "unchanged"}
    assert all(c.comparison.n_baseline == 10 * 10 for c in at_step.comparisons)  # pooled
    after = trends(con, TrendQuery(candidate_commit=commit_of(45)), now=T0)
    assert {c.comparison.verdict for c in after.comparisons} == {"unchanged"}


def test_the_ci_comment_puts_this_commits_regressions_first(
        con: duckdb.DuckDBPyConnection) -> None:
    from bench.history import commit_of
    from cli.ci.benchmarks import summary

    commit = commit_of(30)
    text = summary(trends(con, TrendQuery(candidate_commit=commit), now=T0), commit)
    assert f"Benchmarks at {commit[:12]}: 1 regressions in 3 series" in text
    rows = [line for line in text.splitlines() if line.startswith("| m")]
    assert rows[0].startswith("| m0 ·") and rows[0].endswith("| **regression** |")
    assert all(r.endswith("| unchanged |") for r in rows[1:])
    quiet = trends(con, TrendQuery(candidate_commit="abcdef0"), now=T0)
    assert summary(quiet, "abcdef0") == ""  # no result at that commit: nothing said
