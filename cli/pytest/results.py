"""What the workers report about a run's tests, replayed through pytest's own hooks here
(as pytest-xdist does): each test's reports and warnings as its worker sent them, failures
held for a rerun, and reports made here for tests that could not run."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from cli.pytest.wire import requirements_of, unpack_reports, unserialize_warning
from dtf_core.events.tests import SESSION_EXIT, SESSION_FAILED, TestCase, TestsReported
from dtf_core.spec import Requirements, TaskSpec

_decode_reports = msgspec.json.Decoder(list[dict[str, Any]] | dict[str, Any]).decode
_decode_warnings = msgspec.json.Decoder(list[dict[str, Any]]).decode


@dataclass
class Follow:
    """What the run waits for, and what it learnt."""

    pending_tasks: dict[str, set[str]] = field(default_factory=dict)  # task -> node ids
    done: set[str] = field(default_factory=set)
    held: dict[str, list[Any]] = field(default_factory=dict)  # failures waiting for a rerun
    workers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # node -> outcomes


class Results:
    """The replaying side of ``DtfRun``."""

    config: pytest.Config
    follow: Follow
    items: dict[str, Any]
    reruns_left: dict[str, int]
    flaky: list[str]
    by_path: list[tuple[str, Requirements]]
    spec_template: dict[str, Any]
    bg: Any  # remote.Background
    remote: Any  # remote.Remote
    begun: Any  # remote.Begun

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.flaky:
            terminalreporter.section("flaky tests (passed on rerun)", sep="-")
            for nodeid in self.flaky:
                outcomes = ", ".join(f"{o} on {w}" for w, o in self.follow.workers[nodeid])
                terminalreporter.line(f"{nodeid}: {outcomes}")

    def _say(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"dtf: {text}")
        else:
            print(f"dtf: {text}", file=sys.stderr)

    def _rerun(self, nodeids: list[str]) -> None:
        """Each failed test again, alone, preferring a worker that has not run it."""
        specs = []
        for nodeid in nodeids:
            tried = tuple(sorted({w for w, _ in self.follow.workers.get(nodeid, [])}))
            req = msgspec.structs.replace(requirements_of(self.items[nodeid], self.by_path),
                                          avoid_workers=tried)
            config = {**self.spec_template, "node_ids": [nodeid]}
            specs.append(TaskSpec(type="test", name=f"rerun {nodeid}"[:256], priority=10,
                                  requirements=req, config=config,
                                  timeout_seconds=self.config.getoption("dtf_chunk_timeout")))
        ids = self.bg.call(self.remote.submit(specs, self.begun.run_id))
        for task_id, nodeid in zip(ids, nodeids, strict=True):
            self.follow.pending_tasks[task_id] = {nodeid}
        self._say(f"rerunning {len(nodeids)} failed test(s)")


    def session_should_stop(self) -> bool:
        session = self.items and next(iter(self.items.values())).session
        return bool(session and (session.shouldfail or session.shouldstop))

    def _on_tests(self, event: TestsReported) -> None:
        nodes = self.follow.pending_tasks.get(event.task_id)
        if nodes is None:
            return  # a task that ended already (a late duplicate), or not ours
        for case in event.cases:
            if self.session_should_stop():
                return  # -x or --maxfail: no report after the one that stopped the run
            if case.nodeid in self.follow.done or case.nodeid not in self.items:
                continue
            self.follow.workers.setdefault(case.nodeid, []).append(
                (event.worker_id, case.outcome))
            reports = self._reports(case)
            nodes.discard(case.nodeid)
            failed = case.outcome in ("failed", "error", "crashed")
            if failed and self.reruns_left.get(case.nodeid, 0) > 0:
                self.reruns_left[case.nodeid] -= 1
                self.follow.held[case.nodeid] = reports
                continue
            if not failed and case.nodeid in self.follow.held:
                self.flaky.append(case.nodeid)
            self.follow.held.pop(case.nodeid, None)
            self._replay(case.nodeid, reports, case.warnings)

    def _on_task_end(self, task_id: str, event: Any) -> None:
        nodes = self.follow.pending_tasks.pop(task_id, None)
        if nodes is None:
            return
        why = getattr(event, "error", "") or getattr(event, "reason", "") or ""
        status = type(event).__struct_config__.tag
        if status == "failed" and why.startswith((SESSION_FAILED, SESSION_EXIT)):
            # Not a test's failure: pytest itself could not run there, or a test stopped the
            # run with pytest.exit(). Stop here as pytest would, with its message and code.
            code = getattr(event, "exit_code", None) or 3
            if why.startswith(SESSION_EXIT):
                pytest.exit(why[len(SESSION_EXIT):], returncode=code)
            pytest.exit(f"dtf: {why}", returncode=code)
        for nodeid in sorted(nodes):
            if nodeid in self.follow.done or nodeid in self.follow.held:
                continue
            self._replay(nodeid, [self._synthetic(
                nodeid, "failed", f"not run: DTF task {task_id} ended {status}"
                                  + (f": {why}" if why else ""))])
        held = [n for n in self.follow.held if n not in self.follow.done
                and not any(n in ns for ns in self.follow.pending_tasks.values())]
        if held:
            self._rerun(held)

    def _unmatched(self, nodes: list[str], req: Requirements) -> None:
        allow = self.config.getoption("allow_unmatched")
        what = msgspec.json.encode(msgspec.to_builtins(req)).decode()
        message = f"no live DTF worker meets this test's requirements {what}"
        self._say(f"{len(nodes)} tests need {what}, which no live worker has"
                  + ("; skipped (--allow-unmatched)" if allow else "; they fail"))
        for nodeid in nodes:
            self._replay(nodeid, [self._synthetic(nodeid, "skipped" if allow else "failed",
                                                  message)])

    # --- reports --------------------------------------------------------------------------

    def _reports(self, case: TestCase) -> list[Any]:
        if case.outcome == "crashed" or not case.reports or case.reports == "[]":
            outcome = {"passed": "passed", "skipped": "skipped"}.get(case.outcome, "failed")
            return [self._synthetic(case.nodeid, outcome, case.message or "no report")]
        hook = self.config.hook
        reports = [pytest.TestReport._from_json(data) if data.get("$report_type") == "TestReport"
                   else hook.pytest_report_from_serializable(config=self.config, data=data)
                   for data in unpack_reports(_decode_reports(case.reports))]
        for rep in reports:
            if isinstance(rep.longrepr, list):  # a skip's (path, line, reason): JSON made a list
                rep.longrepr = tuple(rep.longrepr)
        return reports

    def _synthetic(self, nodeid: str, outcome: str, message: str) -> Any:
        item = self.items[nodeid]
        longrepr: Any = message
        if outcome == "skipped":
            longrepr = (str(item.location[0]), (item.location[1] or 0) + 1, message)
        return pytest.TestReport(
            nodeid=nodeid, location=item.location, keywords=dict.fromkeys(item.keywords, 1),
            outcome=outcome, longrepr=longrepr, when="call", sections=(), duration=0.0,  # type: ignore[arg-type]
            start=time.time(), stop=time.time())

    def _replay(self, nodeid: str, reports: list[Any], warnings: str = "") -> None:
        self.follow.done.add(nodeid)
        hook = self.config.hook
        # The worker computed the location already (pytest reads the source for it).
        location = tuple(reports[0].location) if reports else self.items[nodeid].location
        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        for rep in reports:
            hook.pytest_runtest_logreport(report=rep)
        for data in _decode_warnings(warnings) if warnings else ():
            hook.pytest_warning_recorded.call_historic(kwargs={
                "warning_message": unserialize_warning(data), "when": "runtest",
                "nodeid": nodeid, "location": None})
        hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)
