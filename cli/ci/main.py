"""`dtf ci [options] [-- pytest args]`: discover, submit, wait, report, exit with the code.

Defaults come from ``[tool.dtf.ci]`` in pyproject.toml (``args``, ``timeout``, ``reruns``).
Reports go to ``--reports-dir`` (JUnit, JSON, Markdown, HTML), are stored as artifacts of
the run, and reach the CI provider (annotations, step summary, PR/MR comments).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest


def ci_config(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text())
    section = data.get("tool", {}).get("dtf", {}).get("ci", {})
    return section if isinstance(section, dict) else {}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtf ci", description=__doc__)
    p.add_argument("--junit-xml", default=None, help="JUnit file (default REPORTS_DIR/junit.xml)")
    p.add_argument("--reports-dir", default="dtf-reports")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default 1800)")
    p.add_argument("--reruns", type=int, default=None)
    p.add_argument("--allow-unmatched", action="store_true")
    p.add_argument("--server", default=None)
    p.add_argument("--token-file", default=None, help="credential file")
    return p


def run_ci(argv: list[str]) -> int:
    own, _, rest = (argv[:argv.index("--")], None, argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, None, [])
    args, unknown = parser().parse_known_args(own)
    cfg = ci_config(Path.cwd())
    reports = Path(args.reports_dir)
    junit = args.junit_xml or str(reports / "junit.xml")
    timeout = args.timeout if args.timeout is not None else float(cfg.get("timeout", 1800))
    reruns = args.reruns if args.reruns is not None else int(cfg.get("reruns", 0))
    pytest_args = [*unknown, *rest] or [str(a) for a in cfg.get("args", [])]
    full = ["--dtf", "--dtf-ci", "--junit-xml", junit,
            "--dtf-json", str(reports / "report.json"), "--dtf-md", str(reports / "report.md"),
            "--dtf-html", str(reports / "report.html"), "--dtf-timeout", str(timeout),
            "--dtf-reruns", str(reruns), "--dtf-run-name", "ci"]
    if args.allow_unmatched:
        full.append("--allow-unmatched")
    if args.server:
        full += ["--dtf-server", args.server]
    if args.token_file:
        full += ["--dtf-token-file", args.token_file]
    return int(pytest.main([*full, *pytest_args]))


class CiPlugin:
    """After the reports are written: tell the provider, store the artifacts."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        from cli.ci.providers import publish
        from cli.pytest.reports import markdown

        plugin = config.pluginmanager.get_plugin("dtf-reports")
        if plugin is None:
            return
        report = plugin.report
        text = markdown(report) + self._benchmarks()
        try:
            published = publish(report, text)
        except Exception as exc:  # a provider outage must not change the test verdict
            print(f"dtf ci: could not publish to the CI provider: {exc}", file=sys.stderr)
        else:
            for line in published.lines:
                print(line)
            for url in published.posted:
                print(f"dtf ci: commented on {url}")
        if report.run_id:
            try:
                asyncio.run(self._store(report.run_id))
            except Exception as exc:
                print(f"dtf ci: could not store the artifacts: {exc}", file=sys.stderr)

    def _benchmarks(self) -> str:
        """The benchmarks at this commit against the results before (or "")."""
        from cli.ci.benchmarks import section, this_commit
        from cli.pytest.remote import target_from_config

        commit = this_commit()
        if commit is None:
            return ""
        try:
            return asyncio.run(section(target_from_config(self.config), commit))
        except Exception as exc:  # no projector, an old server: the tests' verdict stands
            print(f"dtf ci: no benchmark summary: {exc}", file=sys.stderr)
            return ""

    async def _store(self, run_id: str) -> None:
        from agents.nats.artifacts import put_artifact
        from agents.nats.connect import connect
        from cli.pytest.remote import target_from_config

        opt = self.config.getoption
        files = _read_files([opt("xmlpath"), opt("dtf_json"), opt("dtf_md"), opt("dtf_html")])
        target = target_from_config(self.config)
        nc = await connect(target.server, "dtf-ci", reconnect=False,
                           credential=target.credential, tls_ca=target.tls_ca)
        try:
            js = nc.jetstream()
            for name, data in files.items():
                await put_artifact(js, run_id, name, data)
                print(f"dtf ci: artifact stored: dtf artifacts get {run_id} {name}")
        finally:
            await nc.close()


def _read_files(paths: list[str | None]) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in paths if p and Path(p).is_file()}
