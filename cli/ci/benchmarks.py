"""What `dtf ci` says of benchmarks in its PR comment: the results measured at this commit
(benchmark tasks, imported pytest-benchmark files) against the ten results before them in
each series, regressions first. Nothing when this commit has no benchmark result."""

from __future__ import annotations

import os
import re
import subprocess

import nats.errors

from cli.client_cmds import Target
from cli.report_render import label, pct
from projections.trends import TrendQuery, TrendReport  # imported when dtf ci reports

COMMIT_VARIABLES = ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "BUILDKITE_COMMIT",
                    "CIRCLE_SHA1", "BUILD_SOURCEVERSION")
MAX_ROWS = 20


def this_commit() -> str | None:
    """The commit under test: the CI provider's variable, else git's HEAD here."""
    for name in COMMIT_VARIABLES:
        value = os.environ.get(name, "")
        if re.fullmatch(r"[0-9a-fA-F]{7,64}", value):
            return value
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if re.fullmatch(r"[0-9a-f]{40,64}", out) else None


def summary(report: TrendReport, commit: str) -> str:
    """The PR comment's benchmark section; "" when nothing was compared."""
    rows = report.comparisons
    if not rows:
        return ""
    regressions = sum(k.comparison.verdict == "regression" for k in rows)
    icon = "⚠️" if regressions else "✅"
    lines = ["", f"### {icon} Benchmarks at {commit[:12]}: {regressions} regressions in "
             f"{len(rows)} series", "",
             f"Against the {TrendQuery().history} results before this commit in each series "
             "(Mann-Whitney U, Benjamini-Hochberg q; docs/analytics.md).", "",
             "| series | before | now | change | q | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k in rows[:MAX_ROWS]:
        c = k.comparison
        verdict = f"**{c.verdict}**" if c.verdict == "regression" else c.verdict
        lines.append(f"| {label(k.key)} | {c.baseline_median:.6g} | {c.candidate_median:.6g} "
                     f"| {pct(c.change)} | {c.q_value:.2g} | {verdict} |")
    if len(rows) > MAX_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_ROWS} more (`dtf report --format md`)")
    return "\n".join(lines) + "\n"


async def section(target: Target, commit: str) -> str:
    from agents.wire.projector import refusal, trends
    from cli.client_cmds import connected

    async with connected(target) as nc:
        try:
            report = await trends(nc, TrendQuery(candidate_commit=commit), timeout=60)
        except nats.errors.NoRespondersError:
            return ""  # no projector: no results to compare, nothing to say
    if not report.ok:
        raise refusal(report.error, report.retryable)
    return summary(report, commit)
