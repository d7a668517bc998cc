"""`dtf results query`: benchmark results, or a read-only SELECT, from the running
projector, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import nats.errors

from agents.host import loop as agent_loop
from cli import render
from cli.client_cmds import Target, connected
from dtf_core.commands import Imported
from dtf_core.errors import InvalidInput, Unavailable
from dtf_core.replies import ResultsQuery, ResultsTable

Client = Callable[[str, str], argparse.ArgumentParser]
TEXT_COLUMNS = ("timestamp", "model", "workload", "precision", "batch_size", "hardware_type",
                "worker_id", "commit", "wall_s_mean", "wall_s_ci_low", "wall_s_ci_high",
                "throughput_mean", "peak_rss_mb", "noisy")


def add_parsers(client: Client) -> None:
    res = client("results", "query results while the stack runs (`dtf results query`), or "
                 "import pytest-benchmark's JSON (`dtf results import FILE`)")
    res.add_argument("action", choices=["query", "import"])
    res.add_argument("file", nargs="?", help="import: pytest --benchmark-json's file")
    add_filters(res)
    res.add_argument("--sql", default=None,
                     help="one read-only SELECT over the tables (docs/projections.md)")
    res.add_argument("--limit", type=int, default=1000)
    res.add_argument("--csv", action="store_true", help="CSV output")


def add_filters(res: argparse.ArgumentParser) -> None:
    res.add_argument("--model", default=None)
    res.add_argument("--hardware", default=None, help="cpu, cuda, rocm, mps, ...")
    res.add_argument("--precision", default=None)
    res.add_argument("--batch-size", type=int, default=None)
    res.add_argument("--commit", default=None, help="a commit, or its prefix")
    res.add_argument("--run", dest="run_id", default=None)
    res.add_argument("--workload", default=None)
    res.add_argument("--since", default=None,
                     help="a time (2026-12-01, 2026-12-01T10:00) or an age (30m, 7d)")
    res.add_argument("--until", default=None, help="as --since")


def when(text: str | None, now: float | None = None) -> float | None:
    """Unix time from an ISO date/time (UTC when no zone is given) or an age (30m, 7d)."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return (now if now is not None else time.time()) - float(text[:-1]) * units[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not a time or an age: {text!r} (try 2026-12-01 or 7d)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def query_of(args: argparse.Namespace) -> ResultsQuery:
    return ResultsQuery(model=args.model, hardware=args.hardware, precision=args.precision,
                        batch_size=args.batch_size, commit=args.commit, run_id=args.run_id,
                        workload=args.workload, since=when(args.since), until=when(args.until),
                        sql=getattr(args, "sql", None), limit=getattr(args, "limit", 1000))


async def fetch(target: Target, query: ResultsQuery) -> ResultsTable:
    from agents.wire.projector import refusal, results

    async with connected(target) as nc, projector_errors():
        table = await results(nc, query)
    if not table.ok:
        raise refusal(table.error, table.retryable)
    return table


@contextlib.asynccontextmanager
async def projector_errors() -> AsyncIterator[None]:
    """NATS' errors on a projector query, said in words."""
    try:
        yield
    except nats.errors.NoRespondersError:
        raise Unavailable("no projector is running: `dtf up` starts one (results are read "
                          "from it while the stack runs)") from None
    except nats.errors.TimeoutError:
        raise Unavailable("the projector did not answer in time") from None


def show(args: argparse.Namespace, table: ResultsTable) -> None:
    if args.json:
        sys.stdout.write(json.dumps([dict(zip(table.columns, r, strict=True))
                                     for r in table.rows]) + "\n")
    elif args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(table.columns)
        w.writerows(table.rows)
    else:
        columns = table.columns if args.sql else \
            [c for c in TEXT_COLUMNS if c in table.columns]
        idx = [table.columns.index(c) for c in columns]
        render.table([[_short(r[i]) for i in idx] for r in table.rows], columns)
    if table.truncated:
        sys.stderr.write(f"dtf: more rows matched; showing the first {len(table.rows)} "
                         "(--limit)\n")


def _short(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and len(value) == 40 and value.isalnum():
        return value[:10]  # a commit
    return value


def results(args: argparse.Namespace, target: Target) -> int:
    if args.action == "import":
        return import_file(args, target)
    if args.file:
        raise InvalidInput("results query takes no file (did you mean `dtf results import`?)")
    table = agent_loop.run(fetch(target, query_of(args)))
    show(args, table)
    return 0


def import_file(args: argparse.Namespace, target: Target) -> int:
    from agents.wire.client import ApiClient
    from cli.bench_import import import_command

    if not args.file:
        raise InvalidInput("results import needs the file: `pytest --benchmark-json FILE`'s")
    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror or exc}") from None
    cmd = import_command(raw, run_id=args.run_id)

    async def send() -> Imported:
        async with connected(target) as nc:
            return await ApiClient(nc, credential=target.credential).import_results(cmd)

    done = agent_loop.run(send())
    if args.json:
        render.emit_json(done)
    elif done.already:
        render.out(f"{args.file} was imported before (import {done.import_id}): nothing new")
    else:
        render.out(f"imported {done.results} results from {args.file} "
                   f"(import {done.import_id})")
    return 0


__all__ = ["add_parsers", "results", "when"]
