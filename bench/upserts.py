"""The projector's upserts as its tables grow: CPU per batch written into a table that
already holds N rows, DTF's way against a baseline in the same run.

    python bench/upserts.py [--rows 20000,200000,1000000] [--batches 20,100,500,1000,2000]
                            [--json]

DuckDB plans an upsert as a MERGE: a join of the batch against a scan of the table. Up to
``dynamic_or_filter_threshold`` keys, the join hands the scan the keys themselves and the
primary key's index finds their rows; above it (DuckDB's default: 50), or when the key has
two columns, the scan reads every row group, so a batch's cost grows with the table.

- ``tasks``: the projector's settings (``agents/control/duckdb_thread.HARDENED``) against
  the same settings with DuckDB's default threshold.
- ``attempts``: keyed by ``fencing`` (schema 5) against the same table keyed by
  ``(task_id, attempt)`` (schema 4), both with the projector's settings.

Each batch: half new rows, half updates of rows 300 back (a live batch's mix), written with
the projector's ``insert_rows`` in one transaction. Task ids look random, as DTF's do. The
last line is JSON: per table, size and batch, the median CPU milliseconds per batch
(process time) of DTF's way and of the baseline, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import duckdb

from agents.control.duckdb_thread import HARDENED, Config
from projections import tables
from projections.schema import ATTEMPTS, TASKS, Table, table

AT = datetime(2026, 12, 4)
REPS = 9
STEP = 100_000
Row = tuple[object, ...]


def task_id(i: int) -> str:
    return f"t-{(i * 0x9E3779B97F4A7C15) % (1 << 96):024x}"  # no order of age


def task_row(i: int, status: str) -> Row:
    return (task_id(i), "noop", None, status, 0, None, 1, "local-1", AT, AT, AT, 0, None, i)


def attempt_row(i: int, outcome: str) -> Row:
    return (task_id(i), 1, "local-1", i + 1, AT, AT, AT, outcome, 0, 0.01, None)


# (what, DTF's table, the baseline's table, DTF's config, the baseline's config, row maker)
Case = tuple[str, Table, Table, Config, Config, Callable[[int, str], Row]]


def cases() -> list[Case]:
    dtf: Config = dict(HARDENED)
    default = {k: v for k, v in dtf.items() if k != "dynamic_or_filter_threshold"}
    attempts = table(ATTEMPTS)
    return [("tasks", table(TASKS), table(TASKS), dtf, default, task_row),
            ("attempts", attempts, replace(attempts, key=("task_id", "attempt")), dtf, dtf,
             attempt_row)]


def filled(path: Path, config: Config, t: Table, make: Callable[[int, str], Row],
           rows: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), config=config)
    con.execute(f"CREATE TABLE {t.name} ({t.columns}, PRIMARY KEY ({', '.join(t.key)}))")
    for start in range(0, rows, STEP):
        con.begin()
        tables.insert_rows(con, t, [make(i, "succeeded")
                                    for i in range(start, min(rows, start + STEP))])
        con.commit()
    con.execute("CHECKPOINT")
    return con


def batch_ms(con: duckdb.DuckDBPyConnection, t: Table, rows: list[Row]) -> float:
    c0 = time.process_time()
    con.begin()
    tables.insert_rows(con, t, rows)
    con.commit()
    return (time.process_time() - c0) * 1e3


def measure(sizes: list[int], batches: list[int], say: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dtf-upserts-") as tmp:
        for what, ours, theirs, our_config, their_config, make in cases():
            for size in sizes:
                sides = {
                    "dtf": (ours, filled(Path(tmp) / f"{what}-dtf-{size}.duckdb", our_config,
                                         ours, make, size)),
                    "baseline": (theirs, filled(Path(tmp) / f"{what}-base-{size}.duckdb",
                                                their_config, theirs, make, size)),
                }
                after = size
                for n in batches:
                    times: dict[str, list[float]] = {side: [] for side in sides}
                    for _ in range(REPS):
                        rows = []
                        for _ in range(n // 2):
                            rows += [make(after, "leased"), make(after - 300, "succeeded")]
                            after += 1
                        for side, (t, con) in sides.items():  # the same rows, in turns
                            times[side].append(batch_ms(con, t, rows))
                    dtf, base = (statistics.median(times[s]) for s in ("dtf", "baseline"))
                    out.append({"table": what, "rows": size, "batch": n,
                                "dtf_ms": round(dtf, 2), "baseline_ms": round(base, 2),
                                "baseline_over_dtf": round(base / dtf, 2)})
                    if say:
                        print(f"{what:>8} {size:>9,} rows, batch {n:>5}: DTF {dtf:7.2f} ms, "
                              f"baseline {base:7.2f} ms ({base / dtf:.2f}x)", flush=True)
                for _, con in sides.values():
                    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="20000,200000,1000000")
    ap.add_argument("--batches", default="20,100,500,1000,2000")
    ap.add_argument("--json", action="store_true", help="only the JSON line")
    args = ap.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    print(json.dumps({"upserts": measure(sizes, batches, not args.json)}))


if __name__ == "__main__":
    main()
