"""``pytest --dtf``: collect here, run the tests on DTF workers, report here.

The workers send pytest's own serialised reports; this plugin feeds them back through
pytest's hooks (``pytest_runtest_logreport``), as pytest-xdist does, so the terminal
output, ``--junit-xml``, ``-x``/``--maxfail`` and the exit code are pytest's own.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cli.pytest.results import Follow, Results
from cli.pytest.split import DEFAULT_DIST, DIST_MODES
from cli.pytest.wire import (
    local_host,
    path_requirements,
    requirements_of,
    session_template,
)
from dtf_core.events.tests import TestsReported


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dtf", "distributed testing with DTF")
    group.addoption("--dtf", action="store_true", default=False,
                    help="run the collected tests on the DTF workers (`dtf run pytest`)")
    group.addoption("--dtf-server", default=None, help="NATS url (default: DTF_SERVER)")
    group.addoption("--dtf-token-file", default=None, metavar="FILE",
                    help="credential file (default: DTF_TOKEN, DTF_TOKEN_FILE, or the "
                         "admin credential of the last `dtf up` on this host)")
    group.addoption("--dtf-reruns", type=int, default=0, metavar="N",
                    help="rerun a failed test up to N times, on another worker if there is one")
    group.addoption("--allow-unmatched", action="store_true", default=False,
                    help="skip, instead of fail, tests whose requirements no worker meets")
    group.addoption("--dtf-pack", choices=["auto", "always", "never"], default="auto",
                    help="send the code to the workers: auto = when a worker is on another host")
    group.addoption("--dtf-dist", choices=list(DIST_MODES), default=DEFAULT_DIST,
                    help="which tests run together in one process, in collection order, as "
                         "pytest-xdist's --dist: loadfile (default), loadscope, loadgroup, "
                         "load; @pytest.mark.xdist_group is honoured")
    group.addoption("--dtf-timeout", type=float, default=None, metavar="S",
                    help="give up (exit 2) when the run takes longer than S seconds")
    group.addoption("--dtf-chunk-timeout", type=float, default=3600.0, metavar="S")
    group.addoption("--dtf-run-name", default="pytest")
    group.addoption("--dtf-ci", action="store_true", default=False,
                    help="`dtf ci`: publish to the CI provider and store the reports")
    group.addoption("--dtf-json", default=None, metavar="PATH", help="write a JSON report")
    group.addoption("--dtf-md", default=None, metavar="PATH", help="write a Markdown report")
    group.addoption("--dtf-html", default=None, metavar="PATH",
                    help="write an HTML report (one file)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dtf(hardware=[...], min_memory_gb=0, min_cuda_compute=None): what the DTF worker "
        "that runs this test must have")
    if not config.pluginmanager.hasplugin("xdist"):
        config.addinivalue_line(
            "markers", "xdist_group(name): run these tests in one process (`--dtf-dist`)")
    if hasattr(config, "workerinput"):
        return  # a worker's session: the submitter reports
    if config.getoption("dtf", False):
        config.pluginmanager.register(DtfRun(config), "dtf-run")
    if any(config.getoption(o, None) for o in ("dtf_json", "dtf_md", "dtf_html")):
        from cli.pytest.reports import ReportPlugin

        config.pluginmanager.register(ReportPlugin(config), "dtf-reports")
    if config.getoption("dtf_ci", False):
        from cli.ci.main import CiPlugin

        config.pluginmanager.register(CiPlugin(config), "dtf-ci")



def wait(future: concurrent.futures.Future[Any], timeout: float | None = None) -> Any:
    """The future's result (cancelled when waiting ends otherwise)."""
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


class DtfRun(Results):
    """The run, in pytest's hooks: it starts at session start (chunks are submitted while
    pytest collects here), then replays the workers' reports through pytest's hooks in the
    main thread. The network side runs on its own loop (``remote.Background``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.follow = Follow()
        self.reruns_left: dict[str, int] = {}
        self.flaky: list[str] = []
        self.by_path = path_requirements(config)
        self.run_id = "r-" + uuid.uuid4().hex[:16]
        self.bg: Any = None
        self.remote: Any = None
        self.begun: Any = None
        self.begin_error: BaseException | None = None
        self.starting: concurrent.futures.Future[Any] | None = None

    # --- pytest hooks ---------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return
        from cli.pytest.remote import Background

        self.bg = Background()
        self.starting = self.bg.submit(self._begin(session_template(
            self.config, Path(self.config.rootpath))))

    async def _begin(self, template: dict[str, Any]) -> Any:
        from cli.pytest.remote import Remote, target_from_config

        self.remote = await Remote.open(target_from_config(self.config))
        opt = self.config.getoption
        return await self.remote.begin(
            self.run_id, template, Path(self.config.rootpath), pack=opt("dtf_pack"),
            local_host=local_host(), mode=opt("dtf_dist"), run_name=opt("dtf_run_name"),
            timeout=opt("dtf_chunk_timeout"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            n = session.testsfailed
            raise session.Interrupted(f"{n} error{'s' if n != 1 else ''} during collection")
        if session.config.option.collectonly or not session.items:
            return True
        from dtf_core.errors import DTFError

        # The collected items, and every module, live until the run ends: out of the cyclic
        # collector's sight, its collections while thousands of reports come and go (and the
        # last one at exit) do not walk them again. Half a second of CPU at 2,000 tests.
        gc.freeze()
        try:
            self._run(session)
        except DTFError as exc:  # no server, no credential, forbidden: one clear line
            raise session.Interrupted(f"dtf: {exc}") from None
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        return True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Whatever ended the session (a collection error, nothing to run, Ctrl-C, -x), no
        chunk of this run is left waiting or running."""
        if self.bg is None:
            return
        try:
            begun = self.begun
            if begun is None and self.starting is not None:
                with contextlib.suppress(BaseException):
                    begun = self.starting.result(30)
            if self.follow.pending_tasks or self.follow.done:
                leftover = list(self.follow.pending_tasks)
            else:  # the run never got to its chunks
                leftover = list(begun.task_ids) if begun is not None else []
            if self.remote is not None:
                if leftover:
                    self.bg.call(self.remote.cancel(leftover, "the pytest run stopped"), 30)
                self.bg.call(self.remote.close(), 10)
        except BaseException as exc:  # best effort at the end: the run's outcome stands
            self._say(f"could not cancel this run's leftover chunks on DTF: {exc!r}")
        finally:
            self.bg.close()

    # --- the run --------------------------------------------------------------------------

    def _run(self, session: pytest.Session) -> None:
        from cli.pytest.planning import Collected
        from cli.pytest.split import Entry

        assert self.starting is not None
        self.items = {item.nodeid: item for item in session.items}
        self.reruns_left = dict.fromkeys(self.items, self.config.getoption("dtf_reruns"))
        begun = self.begun = wait(self.starting)
        tests, reqs = [], []
        for item in session.items:
            marker = item.get_closest_marker("xdist_group")
            group = str(marker.args[0] if marker.args else marker.kwargs.get("name", "")) \
                if marker is not None else ""
            tests.append(Entry(item.nodeid, group))
            reqs.append(requirements_of(item, self.by_path))
        opt = self.config.getoption
        plan = self.bg.call(self.remote.finish(
            begun, Collected(tuple(tests), tuple(reqs)), mode=opt("dtf_dist"),
            run_name=opt("dtf_run_name"), timeout=opt("dtf_chunk_timeout")))
        if begun.packed_note:
            self._say(begun.packed_note)
        for text in plan.messages:
            self._say(text)
        for req, nodes in plan.unmatched:
            self._unmatched(nodes, req)
        for task_id, nodes in zip(begun.task_ids, begun.chunks, strict=True):
            if nodes:
                self.follow.pending_tasks[task_id] = set(nodes)
        self.spec_template = begun.template
        self._say(f"run {begun.run_id}: {len(self.items)} tests in "
                  f"{len(self.follow.pending_tasks)} tasks"
                  + (" (started before collection ended)" if begun.speculated else ""))
        timeout = opt("dtf_timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._follow(deadline)
        except concurrent.futures.TimeoutError:
            raise session.Interrupted(
                f"dtf: the run did not finish within {timeout:g}s; its tasks are cancelled"
            ) from None

    def _follow(self, deadline: float | None) -> None:
        if not self.follow.pending_tasks:
            return
        events = self.remote.events(self.begun)
        waiting_since: float | None = time.monotonic()  # until the first test's result
        try:
            while self.follow.pending_tasks:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                batch = self.bg.submit(events.__anext__())
                if waiting_since is not None:
                    show_waiting(self.config, batch, deadline, self.follow, waiting_since)
                for event in wait(batch, left):
                    if isinstance(event, TestsReported):
                        waiting_since = None
                        self._on_tests(event)
                    else:
                        self._on_task_end(getattr(event, "task_id", ""), event)
                    if self.session_should_stop():
                        return
        finally:
            with contextlib.suppress(BaseException):
                self.bg.call(events.aclose(), 10)


def show_waiting(config: pytest.Config, batch: concurrent.futures.Future[Any],
                 deadline: float | None, follow: Follow, start: float) -> None:
    """On a terminal, a line that says what the run waits for until ``batch`` comes,
    erased before anything else is printed (elsewhere, nothing at all)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not getattr(reporter, "isatty", False):
        return
    shown = False
    try:
        while not batch.done() and (deadline is None or time.monotonic() < deadline):
            concurrent.futures.wait([batch], timeout=0.25)  # a display refresh
            if not batch.done():
                reporter.rewrite(f"dtf: {len(follow.pending_tasks)} chunks on the workers, "
                                 f"waiting for the first results "
                                 f"({time.monotonic() - start:.0f}s)")
                shown = True
    finally:
        if shown:
            reporter.rewrite("", erase=True)
            reporter.write("\r")
