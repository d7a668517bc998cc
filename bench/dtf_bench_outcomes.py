"""A pytest plugin for ``bench/corpus.py``: each test's outcome and failure text, as the
process that reports the run sees them (the xdist controller, the `dtf run pytest` client,
or plain pytest), one JSON object per line in ``$DTF_BENCH_OUTCOMES``.

Loaded with ``-p dtf_bench_outcomes`` and this directory on PYTHONPATH; it writes nothing
in a worker's session (``config.workerinput``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_OUT: Any = None


def pytest_configure(config: pytest.Config) -> None:
    global _OUT
    path = os.environ.get("DTF_BENCH_OUTCOMES")
    if path and not hasattr(config, "workerinput"):
        _OUT = open(path, "w", encoding="utf-8")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _OUT
    if _OUT is not None:
        _OUT.close()
        _OUT = None


def _write(obj: dict[str, Any]) -> None:
    if _OUT is not None:
        _OUT.write(json.dumps(obj) + "\n")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed or report.skipped:
        _write({"kind": "collect", "nodeid": report.nodeid, "outcome": report.outcome,
                "text": report.longreprtext})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _write({"kind": "test", "nodeid": report.nodeid, "when": report.when,
            "outcome": report.outcome, "wasxfail": getattr(report, "wasxfail", None),
            "text": report.longreprtext if report.failed or report.skipped else "",
            "sections": [name for name, _ in report.sections] if report.failed else []})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write({"kind": "exit", "code": int(exitstatus)})
