"""Analytics speed: ingesting benchmark results through the projector's path, and trend
analysis over a million result rows.

    python bench/analytics.py [--events 60000] [--series 1000] [--points 1000] [--json]

- Ingest: a distributed pytest run's events (chunks reporting their tests in batches of
  200, bench/history.py) folded by the projector's TableWriter and written in batches of
  10,000 events with ``write_batch`` into a DuckDB file: rows per second over every table
  written (nearly all ``test_results``). The same for benchmark results (three events and
  about seven rows in five tables per result). Baseline in the same run: the same rows
  appended straight into empty tables (the Appender, no fold): the ceiling.
- Trends: SERIES x POINTS results (default a million ``bench_metrics`` rows) filled into a
  DuckDB file, 10% of the series with a 10% step; ``trends()`` (the projector's
  ``dtf.q.trends``) timed end to end. Baseline: the series query alone.

The last line is JSON with ``ingest_rows_per_s`` and ``trend_1m_s`` (issue 16's targets:
>= 100k rows/s, <= 2 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import duckdb

from agents.control.duckdb_thread import TUNING
from bench.history import T0, Story, history, pytest_history
from dtf_core.events.codec import Event
from projections.schema import TABLES
from projections.tables import TableWriter, create_tables, write_batch
from projections.trends import _POINTS, TrendQuery, _params, trends

BATCH = 10_000
SETTINGS = dict(TUNING)  # the projector's


def ingest(evs: list[Event], where: Path, name: str) -> tuple[float, float, int]:
    """(rows/s through fold + write_batch, rows/s appended raw, rows)."""
    con = duckdb.connect(str(where / f"{name}.duckdb"), config=SETTINGS)
    create_tables(con)
    writer = TableWriter()
    staged = []
    t0 = time.perf_counter()
    rows = 0
    for start in range(0, len(evs), BATCH):
        for seq, ev in enumerate(evs[start:start + BATCH], start=start + 1):
            writer.fold(seq, ev)
        pending = writer.take()
        if pending is not None:
            write_batch(con, pending)
            writer.stored(pending)
            rows += pending.row_count
            staged.append(pending)
    projector = time.perf_counter() - t0
    raw = duckdb.connect(str(where / f"{name}-raw.duckdb"), config=SETTINGS)
    create_tables(raw)
    t0 = time.perf_counter()
    for pending in staged:
        raw.begin()
        for table in TABLES:
            batch = pending.rows.get(table.name)
            if batch:
                with raw.appender(table.name, action=table.action) as app:
                    app.append_rows(batch)
        raw.commit()
    appended = time.perf_counter() - t0
    return rows / projector, rows / appended, rows


FILL = """
INSERT INTO bench_results
SELECT s * $points + p, 't' || (s * $points + p), 1, 'run-' || p, 'w1', 'bench-' || s,
       'model-' || s, 'numpy-matmul', 'fp32', 'cpu', 'cpu', '0123456789abcdef', NULL,
       true, true, false, NULL, 0.0, 0.1, 0.1, NULL, NULL, NULL, '{}',
       to_timestamp($t0 + p * 3600)::TIMESTAMP, 'dtf'
FROM range($series) r(s), range($points) q(p);
INSERT INTO bench_metrics
SELECT s * $points + p, 'bench-' || s, 8, 'wall_s', 10,
       v, v, v * 1.05, v * 0.03, v * 0.98, v * 1.02, v * 0.95, v * 1.1, NULL
FROM (SELECT s, p, 0.01 * (1 + s % 7)
             * (CASE WHEN s % 10 = 0 AND p >= $points // 2 THEN 1.10 ELSE 1.0 END)
             * (1 + 0.03 * sqrt(-2 * ln(random())) * cos(2 * pi() * random())) AS v
      FROM range($series) r(s), range($points) q(p));
"""


def trend(series: int, points: int, where: Path) -> tuple[float, float, int, int]:
    """(seconds for trends(), seconds for the series query alone, rows, alarms)."""
    con = duckdb.connect(str(where / "trend.duckdb"))
    create_tables(con)
    values = {"series": series, "points": points, "t0": T0}
    con.execute("SET threads = 1")  # one random stream, seeded: the same noise every run
    con.execute("SELECT setseed(0.42)")
    for statement in FILL.strip().split(";\n"):
        con.execute(statement, {k: v for k, v in values.items() if f"${k}" in statement})
    for name, value in TUNING.items():  # as the projector's connection (duckdb_thread)
        con.execute(f"SET {name} = {value}")
    rows = int(con.execute("SELECT count(*) FROM bench_metrics").fetchall()[0][0])
    q = TrendQuery(max_series=50)
    t0 = time.perf_counter()
    con.execute(_POINTS, _params(q)).fetchnumpy()
    query_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = trends(con, q, now=T0 + points * 3600)
    total = time.perf_counter() - t0
    alarms = report.alarms_total
    return total, query_s, rows, alarms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tests", type=int, default=200_000,
                    help="pytest results in the results stream (default 200,000)")
    ap.add_argument("--events", type=int, default=60_000,
                    help="events of the benchmark results stream (default 60,000)")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        tests = pytest_history(chunks=max(1, args.tests // 2000))
        ingest_rate, raw_rate, rows = ingest(tests, where, "tests")
        per_point = 3 * 3  # three series, three events per result
        benches = history(Story(series=3, points=max(1, args.events // per_point),
                                iterations=20))
        bench_rate, bench_raw, bench_rows = ingest(benches, where, "bench")
        trend_s, query_s, trend_rows, alarms = trend(args.series, args.points, where)
    result = {
        "ingest_rows_per_s": round(ingest_rate),
        "ingest_raw_appender_rows_per_s": round(raw_rate),
        "ingest_ratio_to_raw": round(ingest_rate / raw_rate, 3),
        "ingest_rows": rows,
        "ingest_bench_rows_per_s": round(bench_rate),
        "ingest_bench_raw_appender_rows_per_s": round(bench_raw),
        "ingest_bench_rows": bench_rows,
        "trend_rows": trend_rows,
        "trend_1m_s": round(trend_s, 3),
        "trend_query_only_s": round(query_s, 3),
        "trend_ratio_to_query": round(trend_s / query_s, 2),
        "trend_alarms": alarms,
        "trend_series_stepped": (args.series + 9) // 10,
    }
    if not args.json:
        print(f"ingest, pytest results: {ingest_rate:,.0f} rows/s through fold + write_batch "
              f"({rows:,} rows); raw appender {raw_rate:,.0f} rows/s "
              f"(ratio {ingest_rate / raw_rate:.2f})")
        print(f"ingest, benchmark results: {bench_rate:,.0f} rows/s ({bench_rows:,} rows in "
              f"all tables); raw appender {bench_raw:,.0f} rows/s")
        print(f"trends over {trend_rows:,} rows: {trend_s:.2f} s (the query alone "
              f"{query_s:.2f} s); {alarms} series with alarms, "
              f"{result['trend_series_stepped']} stepped")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
