"""Rendering a trend report: text for a terminal, Markdown for a PR comment, one
self-contained HTML file (charts inline as SVG), and PNG charts for CI artifacts.
docs/analytics.md explains every number shown."""

from __future__ import annotations

import html as htmlmod
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.trends import Series, TrendReport

MAX_CHARTS = 20


def label(key: dict[str, str | int | None]) -> str:
    parts = [key.get("model") or key.get("name"), key.get("workload"), key.get("precision"),
             f"batch {key.get('batch_size')}", key.get("hardware_type")]
    return " · ".join(str(p) for p in parts if p not in (None, ""))


def day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def pct(x: float) -> str:
    return f"{x:+.1%}"


def _direction(report: TrendReport) -> str:
    return "lower is better" if report.worse_when_higher else "higher is better"


def text(report: TrendReport) -> str:
    lines = [f"{report.series_total} series of {report.metric} ({_direction(report)}); "
             f"{report.alarms_total} with alarms"]
    for s in report.series:
        flag = "ALARM " if s.alarm else ""
        lines.append(f"{flag}{label(s.key)}: {s.n} results, last {s.last:.6g}, "
                     f"median {s.median:.6g}")
        for c, t in zip(s.change_points, s.change_times, strict=True):
            lines.append(f"  change at {day(t)}: {c.before:.6g} -> {c.after:.6g} "
                         f"({pct(c.change)}, p={c.p_value:.2g})")
        if s.anomalies:
            lines.append(f"  {len(s.anomalies)} outliers (isolated points, not a change)")
        fc = s.forecast
        if fc is not None:
            past = " - past the budget" if fc.crosses else ""
            lines.append(f"  forecast {day(fc.at)}: {fc.value:.6g} [{fc.low:.6g}, "
                         f"{fc.high:.6g}]{past}")
    for kc in report.comparisons:
        cmp = kc.comparison
        lines.append(f"{cmp.verdict}: {label(kc.key)} {cmp.baseline_median:.6g} -> "
                     f"{cmp.candidate_median:.6g} ({pct(cmp.change)}, q={cmp.q_value:.2g})")
    for f in report.flaky:
        only = f" (only on {', '.join(f.only_on)})" if f.only_on else ""
        lines.append(f"flaky: {f.test_id} score {f.score:.2f}{only}")
    return "\n".join(lines)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return [*out, ""]


def sections(report: TrendReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of each part of a report, in reading order."""
    out = []
    if report.comparisons:
        out.append(("Baseline against candidate runs (regressions first)",
                    ["series", "baseline", "candidate", "change", "Cliff's δ", "q", "verdict"],
                    [[label(k.key), f"{c.baseline_median:.6g}", f"{c.candidate_median:.6g}",
                      pct(c.change), f"{c.cliffs_delta:+.2f}", f"{c.q_value:.2g}",
                      f"**{c.verdict}**" if c.verdict == "regression" else c.verdict]
                     for k in report.comparisons for c in [k.comparison]]))
    changes = [[label(s.key), day(t), f"{c.before:.6g}", f"{c.after:.6g}", pct(c.change),
                f"{c.p_value:.2g}"]
               for s in report.series for c, t in zip(s.change_points, s.change_times,
                                                      strict=True)]
    if changes:
        out.append(("Change points", ["series", "from", "before", "after", "change", "p"],
                    changes))
    forecasts = [[label(s.key), day(f.at), f"{f.value:.6g} [{f.low:.6g}, {f.high:.6g}]",
                  f"{f.threshold:.6g}" if f.threshold is not None else "-"]
                 for s in report.series if (f := s.forecast) is not None and f.crosses]
    if forecasts:
        out.append(("Forecast past the budget", ["series", "at", "forecast [interval]",
                                                 "threshold"], forecasts))
    odd = [[label(s.key), str(len(s.anomalies)), ", ".join(day(t) for t in s.anomaly_times[:5])]
           for s in report.series if s.anomalies]
    if odd:
        out.append(("Outliers (isolated points, not alarms)", ["series", "count", "when"], odd))
    if report.flaky:
        out.append(("Flaky tests (by hardware)",
                    ["test", "score", "by hardware: failures/runs, flip rate", "only on",
                     "failed on"],
                    [[f"`{f.test_id}`", f"{f.score:.2f}",
                      "; ".join(f"{o.hardware_type}: {o.failures}/{o.runs}, {o.flip_rate:.2f}"
                                for o in f.on),
                      ", ".join(f.only_on) or "-",
                      ", ".join(sorted({w for o in f.on for w in o.workers})) or "-"]
                     for f in report.flaky]))
    return out


def summary(report: TrendReport) -> str:
    alarms = report.alarms_total
    regressions = sum(k.comparison.verdict == "regression" for k in report.comparisons)
    return (f"{report.series_total} series of `{report.metric}` ({_direction(report)}): "
            f"{alarms} with alarms, {regressions} regressions between the runs compared, "
            f"{len(report.flaky)} flaky tests.")


def markdown(report: TrendReport, title: str) -> str:
    lines = [f"## {title}", "", summary(report), ""]
    for name, headers, rows in sections(report):
        lines += [f"### {name}", "", *_md_table(headers, rows)]
    if len(lines) == 4:
        lines.append("No change points, forecasts past the budget, regressions or flaky tests.")
    return "\n".join(lines) + "\n"


def chart(s: Series, metric: str, fmt: str) -> bytes:
    """The series over time: each change point a red dashed line, outliers in orange, the
    forecast with its interval and the threshold dotted."""
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    def x(times: list[float]) -> list[float]:
        return [float(date2num(datetime.fromtimestamp(t, UTC)))  # type: ignore[no-untyped-call]
                for t in times]

    fig = Figure(figsize=(8, 2.6), dpi=100)
    ax = fig.subplots()
    ax.xaxis_date()
    ax.plot(x(s.t), s.values, marker=".", linewidth=1, color="#1f77b4", label=metric)
    for t in x(s.change_times):
        ax.axvline(t, color="#d62728", linestyle="--", linewidth=1.2)
    if s.anomalies:
        ax.scatter(x(s.anomaly_times), [a.value for a in s.anomalies], color="#ff7f0e",
                   zorder=3, s=18)
    fc = s.forecast
    if fc is not None:
        ax.errorbar(x([fc.at]), [fc.value], yerr=[[fc.value - fc.low], [fc.high - fc.value]],
                    fmt="o", color="#9467bd", capsize=3)
        if fc.threshold is not None:
            ax.axhline(fc.threshold, color="#9467bd", linestyle=":", linewidth=1)
    ax.set_title(label(s.key), fontsize=9)
    ax.set_ylabel(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def _charted(report: TrendReport) -> list[Series]:
    return report.series[:MAX_CHARTS]


def html(report: TrendReport, title: str) -> str:
    esc = htmlmod.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:left}th{background:#f3f3f3}.alarm{color:#b00}"
             "figure{margin:1em 0}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p>{esc(summary(report).replace('`', ''))}</p>"]
    for name, headers, rows in sections(report):
        parts.append(f"<h2>{esc(name)}</h2><table><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(c.strip('*`'))}</td>" for c in r)
                         + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Series</h2>")
    for s in _charted(report):
        svg = chart(s, report.metric, "svg").decode()
        svg = svg[svg.index("<svg"):]  # inline: no XML prolog or doctype
        cls = " class='alarm'" if s.alarm else ""
        parts.append(f"<figure><figcaption{cls}>{esc(label(s.key))}"
                     f"{' (alarm)' if s.alarm else ''}</figcaption>{svg}</figure>")
    parts.append("</body></html>\n")
    return "".join(parts)


def pngs(report: TrendReport, directory: Path) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(_charted(report)):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label(s.key)).strip("-")[:100]
        path = directory / f"{i:02d}-{name}.png"
        path.write_bytes(chart(s, report.metric, "png"))
        yield path
