"""Run reports as files: JSON, Markdown and a one-file HTML page, from pytest's own reports.

A pytest plugin, so it works for ``pytest --dtf``, ``dtf run pytest`` and ``dtf ci`` (and a
plain local run); JUnit XML is pytest's ``--junit-xml``.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

OUTCOMES = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")  # pytest's order


@dataclass
class Record:
    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    file: str = ""
    line: int | None = None
    message: str = ""
    longrepr: str = ""
    output: str = ""


@dataclass
class RunReport:
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    exit_code: int = 0
    records: dict[str, Record] = field(default_factory=dict)
    run_id: str = ""
    flaky: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(OUTCOMES, 0)
        for r in self.records.values():
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out

    def failures(self) -> list[Record]:
        return [r for r in self.records.values() if r.outcome in ("failed", "error")]

    def summary_line(self) -> str:
        parts = [f"{n} {k}" for k, n in self.counts().items() if n]
        return ", ".join(parts) or "no tests ran"


def _classify(rec: Record, report: Any) -> None:
    if report.when != "call" and report.failed:
        rec.outcome = "error"
    elif hasattr(report, "wasxfail") and report.when == "call":
        rec.outcome = "xpassed" if report.passed else "xfailed"
    elif report.failed and rec.outcome != "error":
        rec.outcome = "failed"
    elif report.skipped and rec.outcome == "passed":
        rec.outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"


class ReportPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.report = RunReport()

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: Any) -> None:
        rec = self.report.records.setdefault(report.nodeid, Record(report.nodeid))
        path, line, _ = report.location
        rec.file, rec.line = str(path), (line + 1 if line is not None else None)
        rec.duration_s += float(getattr(report, "duration", 0.0) or 0.0)
        _classify(rec, report)
        if report.failed:
            rec.longrepr = str(report.longreprtext)
            crash = getattr(report.longrepr, "reprcrash", None)
            last = rec.longrepr.strip().splitlines()[-1:] or [""]
            rec.message = str(getattr(crash, "message", "") or last[0])
            if crash is not None and getattr(crash, "lineno", None):
                rec.file, rec.line = str(crash.path), int(crash.lineno)
            rec.output = "\n".join(f"--- {name} ---\n{text}" for name, text in report.sections)
        elif report.skipped and isinstance(report.longrepr, tuple):
            rec.message = str(report.longrepr[2])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.report.finished = time.time()
        self.report.exit_code = int(exitstatus)
        run = self.config.pluginmanager.get_plugin("dtf-run")
        if run is not None:
            self.report.run_id = getattr(run, "run_id", "")
            self.report.flaky = list(run.flaky)
        opt = self.config.getoption
        for option, writer in (("dtf_json", write_json), ("dtf_md", write_markdown),
                               ("dtf_html", write_html)):
            if opt(option):
                path = Path(opt(option))
                path.parent.mkdir(parents=True, exist_ok=True)
                writer(self.report, path)


def write_json(report: RunReport, path: Path) -> None:
    data = {"run_id": report.run_id, "exit_code": report.exit_code,
            "duration_s": round(report.finished - report.started, 3),
            "counts": report.counts(), "flaky": report.flaky,
            "tests": [asdict(r) for r in report.records.values()]}
    path.write_text(json.dumps(data, indent=1))


def markdown(report: RunReport, limit: int = 50) -> str:
    icon = "✅" if report.exit_code == 0 else "❌"
    lines = [f"## {icon} DTF test run {report.run_id}".rstrip(), "",
             f"**{report.summary_line()}** in {report.finished - report.started:.1f}s "
             f"(exit code {report.exit_code})", "",
             "| outcome | tests |", "| --- | ---: |"]
    lines += [f"| {k} | {n} |" for k, n in report.counts().items() if n]
    if report.flaky:
        lines += ["", "### Flaky (passed on rerun)", ""] + [f"- `{n}`" for n in report.flaky]
    failures = report.failures()
    if failures:
        lines += ["", f"### Failures ({len(failures)})", ""]
        for rec in failures[:limit]:
            lines += [f"<details><summary><code>{html.escape(rec.nodeid)}</code>: "
                      f"{html.escape(rec.message[:200])}</summary>", "", "```",
                      rec.longrepr[-4000:].replace("```", "'''"), "```", "</details>"]
        if len(failures) > limit:
            lines.append(f"\n… and {len(failures) - limit} more")
    return "\n".join(lines) + "\n"


def write_markdown(report: RunReport, path: Path) -> None:
    path.write_text(markdown(report))


def write_html(report: RunReport, path: Path) -> None:
    esc = html.escape
    rows = []
    for rec in sorted(report.records.values(), key=lambda r: (r.outcome == "passed", r.nodeid)):
        detail = (f"<details><summary>{esc(rec.message[:300])}</summary><pre>"
                  f"{esc(rec.longrepr)}\n{esc(rec.output)}</pre></details>"
                  if rec.longrepr else esc(rec.message))
        rows.append(f'<tr class="{esc(rec.outcome)}"><td>{esc(rec.outcome)}</td>'
                    f"<td><code>{esc(rec.nodeid)}</code></td><td>{rec.duration_s:.3f}s</td>"
                    f"<td>{detail}</td></tr>")
    counts = " · ".join(f"{n} {esc(k)}" for k, n in report.counts().items() if n)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DTF run {esc(report.run_id)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse;width:100%}}
td{{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}} pre{{white-space:pre-wrap}}
tr.failed td:first-child,tr.error td:first-child{{color:#b00;font-weight:bold}}
tr.passed td:first-child{{color:#080}} tr.skipped td:first-child{{color:#888}}
</style></head><body>
<h1>DTF test run {esc(report.run_id)}</h1>
<p><b>{counts or "no tests ran"}</b> in {report.finished - report.started:.1f}s,
exit code {report.exit_code}</p>
<table><tr><th>outcome</th><th>test</th><th>time</th><th>details</th></tr>
{"".join(rows)}
</table></body></html>
"""
    path.write_text(page)
