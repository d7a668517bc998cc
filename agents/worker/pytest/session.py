"""A pytest fork server: it collects once, then forks a child per chunk of tests.

The pool starts it as ``python -c BOOT this_file`` in the run's directory (see ``pool.py``),
so that nothing of DTF is importable in it beyond what the worker's environment installs,
and no DTF package is imported before pytest's assertion rewriting is set up. It imports
only the standard library, pytest and msgspec.

Why a fork server: a chunk runs in a fresh copy (fork, copy-on-write) of a process that has
collected the tests and run none of them. No run sees module state, monkeypatching or a
library-wide mode left by another run or chunk, a chunk starts in milliseconds, and a chunk
that hangs or crashes is killed alone.

The protocol with the worker is in ``serving.py``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

import msgspec
import pytest

_encode = msgspec.json.Encoder().encode

# What only the submitting side does: stop after N failures, pick the last failed, step
# wise, debug, distribute. The submitter collected with them already.
OVERRIDES: dict[str, Any] = {
    "maxfail": 0, "lf": False, "failedfirst": False, "newfirst": False,
    "stepwise": False, "stepwise_skip": False, "usepdb": False, "trace": False,
    "numprocesses": None, "dist": "no", "distload": False, "looponfail": False,
    "collectonly": False, "dtf": False,
}



def _load_sibling(name: str) -> Any:
    """A module beside this file, by path (as ``_dtf_<name>``): no DTF package enters
    sys.modules of the tests' process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"_dtf_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_reports = _load_sibling("reports")  # a test's reports, packed to send
_serving = _load_sibling("serving")  # the socket, the children, the plumbing
_chunks = _load_sibling("chunks")  # a chunk in its child
if TYPE_CHECKING:
    from agents.worker.pytest.chunks import Chunks
    from agents.worker.pytest.serving import Serving
else:
    Serving = _serving.Serving
    Chunks = _chunks.Chunks
_note = _serving._note
_Null = _serving._Null
_take_protocol_fds = _serving._take_protocol_fds


class ForkServer(Serving, Chunks):
    def __init__(self, proto_in: IO[bytes], proto_out: IO[bytes], setup: dict[str, Any],
                 recorder: Any = None, digest: Any = None) -> None:
        self.recorder = recorder
        self.digest = digest
        self.proto_in = proto_in
        self.out = proto_out
        self.setup = setup
        self.in_child = False
        self.info: dict[str, Any] = {}
        self.accepted: set[str] = set()
        self.socket_path = ""
        self.socket_inode = 0
        self.config: Any = None
        self.errors: list[dict[str, str]] = []
        self.items: dict[str, Any] = {}
        self.current: list[Any] = []
        self.warnings: list[dict[str, Any]] = []
        self.finished_test: bytes | None = None
        self.finished: list[str] = []  # basetemps of ended children, oldest first
        self.base: Path | None = None  # the server's temporary directory
        self.forks = 0

    def retention(self) -> int:
        try:
            return int(self.config.getini("tmp_path_retention_count"))
        except (ValueError, TypeError) as exc:  # pytest < 7.3 has no such option
            _note("tmp_path_retention_count", exc)
            return 3

    # --- configuration -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: Any) -> None:
        # What pytest-xdist gives its workers: plugins that write files once per run
        # (junitxml, the last-failed cache, report logs) skip them when they see this.
        config.workerinput = dict(self.setup.get("workerinput") or {})
        config.workeroutput = {}
        for name, value in OVERRIDES.items():
            if hasattr(config.option, name):
                setattr(config.option, name, value)

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: Any) -> None:
        self.config = config
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            from _pytest._io import TerminalWriter

            tw = TerminalWriter(file=cast(TextIO, _Null()))
            tw.hasmarkup = bool(self.setup.get("markup"))
            tw.code_highlight = bool(self.setup.get("highlight"))
            if self.setup.get("width"):
                tw.fullwidth = int(self.setup["width"])
            reporter._tw = tw

    @pytest.hookimpl
    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> None:
        self.send({"internal_error": str(excrepr)})

    @pytest.hookimpl
    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append({"nodeid": report.nodeid, "longrepr": str(report.longrepr)})

    # --- one test ------------------------------------------------------------------------

    @pytest.hookimpl
    def pytest_warning_recorded(self, warning_message: Any, when: str, nodeid: str,
                                location: Any) -> None:
        if when == "runtest" and self.in_child:
            self.warnings.append(_reports.serialize_warning(warning_message))

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.current = []
        self.warnings = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: Any) -> None:
        self.current.append(report)

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        reports, self.current = self.current, []
        hook = self.config.hook
        data = [hook.pytest_report_to_serializable(config=self.config, report=r)
                for r in reports]
        duration = sum(float(getattr(r, "duration", 0.0)) for r in reports)
        # Sent once the protocol returns: pytest records the test's warnings after it.
        self.finished_test = (b'{"done":' + _encode(nodeid) + b',"outcome":'
                              + _encode(_reports.outcome_of(reports)) + b',"duration":'
                              + _encode(duration) + b',"reports":' + _reports.fit(data))

    # --- the loop ------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: Any) -> bool:
        self.items = {item.nodeid: item for item in session.items}
        deps = self.recorder.snapshot() if self.recorder is not None else []
        self._zygote_basetemp()
        collection = self.digest([i.nodeid for i in session.items]) if self.digest else ""
        self.info = {"ready": len(self.items), "errors": self.errors, "pid": os.getpid(),
                     "deps": deps, "collection": collection}
        self.accepted = {collection, *self.setup.get("accepted", ())}
        listener = self._listen(str(self.setup["socket"]))
        self.send({**self.info, "accepted": sorted(self.accepted)})
        self.proto_in.close()  # detached: the workers that use it talk on its socket
        self.out.close()
        # Children share the collected objects copy-on-write: out of the cyclic collector's
        # sight, its passes in a child do not touch (and so copy) every page of them.
        gc.collect()
        gc.freeze()
        request = self._serve(listener)
        if request is not None:  # in a forked child
            self._run_chunk(session, request)
        return True

def main() -> int:
    proto_in, proto_out = _take_protocol_fds()
    freshness = _load_sibling("freshness")
    recorder = freshness.Recorder()
    sys.addaudithook(recorder)  # what the collection reads: the server's freshness
    # Started ahead of need (pytest imported already), the process learns here where and
    # how its session runs.
    first = proto_in.readline()
    if not first.strip():  # its worker went away before it needed this spare: end here
        return 0
    setup = json.loads(first)
    if setup.get("cwd"):
        os.chdir(setup["cwd"])
    if isinstance(setup.get("env"), dict):
        os.environ.clear()
        os.environ.update(setup["env"])
    if setup.get("path0"):
        sys.path.insert(0, str(setup["path0"]))
    server = ForkServer(proto_in, proto_out, setup, recorder, freshness.collection_digest)
    code = pytest.main(list(setup.get("args") or []), plugins=[server])
    if server.in_child:  # a child ends here, without the server's exit handlers
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError) as exc:
            _note("flushing a child's output", exc)
        os._exit(0)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
