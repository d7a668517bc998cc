"""`dtf trends` and `dtf report`: the projector's analysis of the benchmark history, as text,
JSON, Markdown (a PR comment) or one self-contained HTML file, with PNG charts for CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from agents.host import loop as agent_loop
from cli import render, report_render
from cli.client_cmds import Target, connected
from cli.results_cmds import Client, add_filters, projector_errors, query_of
from dtf_core.errors import InvalidInput

if TYPE_CHECKING:
    from projections.trends import TrendQuery, TrendReport


def add_parsers(client: Client) -> None:
    tr = client("trends", "change points, anomalies and forecasts of benchmark results")
    rp = client("report", "a report of the benchmark history: html, md or json")
    for p in (tr, rp):
        add_filters(p)
        p.add_argument("--metric", choices=["wall_s", "throughput", "peak_rss_mb"],
                       default="wall_s")
        p.add_argument("--horizon-days", type=float, default=30.0,
                       help="how far ahead the forecast looks (default 30)")
        p.add_argument("--budget", type=float, default=0.10,
                       help="flag a forecast past the current level by this fraction "
                            "(default 0.10)")
        p.add_argument("--baseline", action="append", default=[], metavar="RUN",
                       help="a run to compare against --candidate (repeatable)")
        p.add_argument("--candidate", action="append", default=[], metavar="RUN")
        p.add_argument("--at-commit", default=None, metavar="SHA",
                       help="compare the results at this commit (or prefix) with the ten "
                            "before them in each series (what `dtf ci` comments)")
        p.add_argument("--max-series", type=int, default=50)
    rp.add_argument("--format", choices=["html", "md", "json"], default="md")
    rp.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    rp.add_argument("--png", default=None, metavar="DIR",
                    help="also write each series' chart as a PNG into DIR")
    rp.add_argument("--title", default="DTF benchmark report")


def trend_query(args: argparse.Namespace) -> TrendQuery:
    from projections.trends import TrendQuery  # numpy and scipy: only for these commands

    if bool(args.baseline) != bool(args.candidate):
        raise InvalidInput("--baseline and --candidate go together: name the runs of both")
    if args.at_commit and args.baseline:
        raise InvalidInput("--at-commit or --baseline/--candidate, not both")
    try:
        return msgspec.convert({
            "filters": query_of(args), "metric": args.metric,
            "horizon_days": args.horizon_days, "budget": args.budget,
            "baseline": args.baseline, "candidate": args.candidate,
            "candidate_commit": args.at_commit, "max_series": args.max_series},
            TrendQuery, from_attributes=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid option: {exc}") from None


async def fetch(target: Target, query: TrendQuery) -> TrendReport:
    from agents.wire.projector import refusal, trends

    async with connected(target) as nc, projector_errors():
        report = await trends(nc, query)
    if not report.ok:
        raise refusal(report.error, report.retryable)
    return report


def trends_cmd(args: argparse.Namespace, target: Target) -> int:
    report = agent_loop.run(fetch(target, trend_query(args)))
    if args.json:
        render.emit_json(report)
    else:
        render.out(report_render.text(report))
    return 1 if any(s.alarm for s in report.series) else 0


def report_cmd(args: argparse.Namespace, target: Target) -> int:
    report = agent_loop.run(fetch(target, trend_query(args)))
    if args.format == "json":
        data = msgspec.json.format(msgspec.json.encode(report)).decode() + "\n"
    elif args.format == "md":
        data = report_render.markdown(report, args.title)
    else:
        data = report_render.html(report, args.title)
    if args.output:
        Path(args.output).write_text(data)
        sys.stderr.write(f"wrote {args.output}\n")
    else:
        sys.stdout.write(data)
    if args.png:
        for path in report_render.pngs(report, Path(args.png)):
            sys.stderr.write(f"wrote {path}\n")
    return 0
