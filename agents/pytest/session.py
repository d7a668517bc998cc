"""A warm pytest session: ``python -m agents.pytest.session ARGS...`` in the test root.

It collects ``ARGS`` once, like an xdist worker, then runs the chunks of node ids it is sent
and writes each test's serialised reports as it finishes. The protocol uses the process's
original stdin and stdout, which are moved aside first, so nothing a test prints or reads
can corrupt it (tests see /dev/null on fd 0, and their stdout goes to stderr).

In:  one JSON object per line: {"run": [node ids]}.
Out: {"ready": n_items, "errors": [...]} once; then per test {"start": nodeid} and
     {"done": nodeid, "outcome": ..., "duration": s, "reports": [serialised, ...]};
     {"chunk_done": true} after each chunk.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import msgspec
import pytest

_encode = msgspec.json.Encoder().encode


def _take_protocol_fds() -> tuple[IO[bytes], IO[bytes]]:
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


def outcome_of(reports: list[Any]) -> str:
    """pytest's own classification of an item from its phase reports."""
    for rep in reports:
        if rep.when != "call" and rep.failed:
            return "error"
    for rep in reports:
        if hasattr(rep, "wasxfail"):
            return "xpassed" if rep.passed else "xfailed"
    for rep in reports:
        if rep.failed:
            return "failed"
    if any(rep.skipped for rep in reports):
        return "skipped"
    return "passed"


class SessionPlugin:
    def __init__(self, proto_in: IO[bytes], proto_out: IO[bytes]) -> None:
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.current: list[Any] = []
        self.config: Any = None
        self.errors: list[dict[str, str]] = []

    def send(self, obj: dict[str, Any]) -> None:
        self.proto_out.write(_encode(obj) + b"\n")

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: Any) -> None:
        self.config = config
        # Nobody reads this session's terminal: the client prints the run's report from
        # the reports sent here. Its reporter would cost half a millisecond a test (its
        # options stay registered, so `--tb` and the like still parse and apply).
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)

    @pytest.hookimpl
    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append({"nodeid": report.nodeid, "longrepr": str(report.longrepr)})

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.current = []
        self.send({"start": nodeid})

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: Any) -> None:
        self.current.append(report)

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        reports = self.current
        self.current = []
        serial = [self.config.hook.pytest_report_to_serializable(config=self.config, report=r)
                  for r in reports]
        duration = sum(float(getattr(r, "duration", 0.0)) for r in reports)
        self.send({"done": nodeid, "outcome": outcome_of(reports), "duration": duration,
                   "reports": serial})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: Any) -> bool:
        items = {item.nodeid: item for item in session.items}
        self.send({"ready": len(items), "errors": self.errors})
        for line in self.proto_in:
            request = json.loads(line)
            chunk = [str(n) for n in request.get("run", [])]
            known = [items[n] for n in chunk if n in items]
            for nodeid in chunk:
                if nodeid not in items:
                    self.send({"done": nodeid, "outcome": "error", "duration": 0.0,
                               "reports": [], "message": "not collected by the worker"})
            for i, item in enumerate(known):
                nextitem = known[i + 1] if i + 1 < len(known) else None
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            self.send({"chunk_done": True})
        return True


def main(argv: list[str]) -> int:
    proto_in, proto_out = _take_protocol_fds()
    plugin = SessionPlugin(proto_in, proto_out)
    # -p no:cacheprovider: a worker never writes the user's .pytest_cache;
    # -q: the session's own output only goes to the worker's log.
    code = pytest.main([*argv, "-q", "-p", "no:cacheprovider", "-p", "no:dtf"],
                       plugins=[plugin])
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
