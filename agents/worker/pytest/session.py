"""A pytest fork server: it collects once, then forks a child per chunk of tests.

The pool starts it as ``python -c BOOT this_file`` in the run's directory (see ``pool.py``),
so that nothing of DTF is importable in it beyond what the worker's environment installs,
and no DTF package is imported before pytest's assertion rewriting is set up. It imports
only the standard library, pytest and msgspec.

Why a fork server: a chunk runs in a fresh copy (fork, copy-on-write) of a process that has
collected the tests and run none of them. No run sees module state, monkeypatching or a
library-wide mode left by another run or chunk, a chunk starts in milliseconds, and a chunk
that hangs or crashes is killed alone.

Protocol. The process that starts it (a worker) writes one JSON line on its stdin, the
setup: {"args": [...], "cwd": dir, "env": {...}, "path0": dir or null, "markup": bool,
"highlight": bool, "width": n, "workerinput": {...}, "socket": path, "accepted": [...]}
(the process may have been started before it was known). Once collected, it binds the
unix socket ``socket`` and answers on stdout {"ready": n_items, "errors": [...], "deps":
[...], "collection": digest, ...} (what collecting read and what it collected, see
freshness.py), or {"internal_error": text} before it exits. From then on it serves every
worker of the host that attaches to the socket (see ``_serve``), and ends when the last has
detached. Its original stdin and stdout are moved aside first, so nothing a test prints or
reads can corrupt them: tests see /dev/null on fd 0, their stdout goes to stderr, the
session's log.

A chunk's child writes, on the chunk's connection: {"forked": pid}, then per test, as it
ends, {"done": nodeid, "outcome": ..., "duration": s, "reports": ..., "warnings": [...]}
(it runs them in the order asked, so when it dies the test it was running is the first
without a line: one write, and one wake-up of the worker, a test), and {"end": true}
when every test ran (or {"exit_requested": text, "returncode": n} when a test called
pytest.exit). The server adds {"exit": status} when
the child is gone (a negative status is the signal that killed it).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any, TextIO, cast

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

DETACHED_GRACE_S = 2.0  # a server no worker is attached to ends after this


def _take_protocol_fds() -> tuple[IO[bytes], IO[bytes]]:
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


# --- the terminal nobody reads ----------------------------------------------------------

class _Null(io.TextIOBase):
    """A file that takes everything and keeps nothing: the session's terminal writer writes
    here (pytest and plugins need a real TerminalWriter to explain failures)."""

    def write(self, s: str) -> int:
        return len(s)

    def isatty(self) -> bool:
        return False


def _note(what: str, exc: BaseException) -> None:
    """What the session let go of, in its log (its stderr is the worker's session log)."""
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"dtf session: {what}: {exc!r}\n")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError) as exc:
            _note("cannot die with the worker", exc)


class ForkServer:
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

    def send(self, obj: dict[str, Any]) -> None:
        self.out.write(_encode(obj) + b"\n")
        self.out.flush()

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

    def _send_finished(self) -> None:
        line, self.finished_test = self.finished_test, None
        if line is None:
            return
        line += b',"warnings":' + _encode(self.warnings)
        self.warnings = []
        self.out.write(line + b"}\n")
        self.out.flush()

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

    def _listen(self, path: str) -> socket.socket:
        """The server's socket, put in place atomically (a retired server's may be there)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = f"{path}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        listener.bind(tmp)
        os.chmod(tmp, 0o600)
        listener.listen(64)
        os.rename(tmp, path)
        self.socket_path = path
        self.socket_inode = os.stat(path).st_ino
        return listener

    def _zygote_basetemp(self) -> None:
        """The server's own temporary directory; each chunk gets a fresh one inside it, as
        pytest-xdist gives each worker one inside the run's. A ``--basetemp`` is shared by
        every session on the host, so the server takes a directory of its own in it."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None:
            return
        try:
            given = factory._given_basetemp
            if given is not None:
                given.mkdir(parents=True, exist_ok=True)
                factory._given_basetemp = given / f"dtf-{os.getpid()}"
                factory._basetemp = None
            self.base = Path(factory.getbasetemp())
        except (AttributeError, OSError) as exc:  # pytest's internals moved: its default
            _note("no temporary directory of its own", exc)

    def _serve(self, listener: socket.socket) -> dict[str, Any] | None:
        """Serve the workers that attach, forking a child per chunk, until the last one
        detaches (or it is retired) and the last child has ended. Returns the request in a
        child, None in the server at the end.

        Requests, one JSON line per connection: {"attach": true} (the worker keeps it open
        while it may use this server; replies with the server's info; later lines on it:
        {"accept": digest}, {"retire": true}), or {"run": [node ids], ...} (a chunk: the
        child writes its lines on that connection; the server adds {"exit": status})."""
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, ("listen", None))
        children: dict[int, _Child] = {}
        attached: dict[socket.socket, bytes] = {}
        serving = True
        alone_since: float | None = None
        while True:
            if not children and (not serving or not attached):
                alone_since = alone_since or time.monotonic()
                if not serving or time.monotonic() - alone_since > DETACHED_GRACE_S:
                    break
            else:
                alone_since = None
            for key, _ in sel.select(timeout=0.05 if children else 0.5):
                kind, conn = key.data
                if kind == "listen":
                    new, _ = listener.accept()
                    sel.register(new, selectors.EVENT_READ, ("new", new))
                    attached[new] = b""
                elif kind == "child":  # its worker hung up: the chunk is cancelled
                    data = b""
                    with contextlib.suppress(OSError):
                        data = conn.recv(1 << 16)
                    if not data:
                        sel.unregister(conn)
                        for c in children.values():
                            if c.conn is conn:
                                c.kill()
                else:
                    data = b""
                    with contextlib.suppress(OSError):
                        data = conn.recv(1 << 20)
                    if not data:
                        sel.unregister(conn)
                        attached.pop(conn, None)
                        conn.close()
                        continue
                    attached[conn] += data
                    while b"\n" in attached.get(conn, b""):
                        line, attached[conn] = attached[conn].split(b"\n", 1)
                        request: dict[str, Any] = json.loads(line)
                        if "run" in request:
                            sel.unregister(conn)
                            attached.pop(conn, None)
                            if self._fork(request, conn, sel, listener, children, attached):
                                return request  # in the child
                            sel.register(conn, selectors.EVENT_READ, ("child", conn))
                            break
                        if request.get("retire") and serving:
                            serving = False
                            self._unlisten(listener, sel)
                        if "accept" in request:
                            self.accepted.add(str(request["accept"]))
                        if request.get("attach") or "accept" in request:
                            info = {**self.info, "accepted": sorted(self.accepted)}
                            conn.sendall(_encode(info) + b"\n")
            for pid in list(children):
                child = children[pid]
                status = child.reaped()
                if status is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(child.conn)
                    with contextlib.suppress(OSError):
                        child.conn.sendall(_encode({"exit": status}) + b"\n")
                    child.conn.close()
                    del children[pid]
                    self._forget_basetemp(child.basetemp)
        if serving:
            self._unlisten(listener, sel)
        return None

    def _unlisten(self, listener: socket.socket, sel: selectors.BaseSelector) -> None:
        """No new workers: the socket goes, unless a newer server has put its own there."""
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(listener)
        listener.close()
        with contextlib.suppress(OSError):
            if os.stat(self.socket_path).st_ino == self.socket_inode:
                os.unlink(self.socket_path)

    def _fork(self, request: dict[str, Any], conn: socket.socket,
              sel: selectors.BaseSelector, listener: socket.socket,
              children: dict[int, _Child], attached: dict[socket.socket, bytes]) -> bool:
        """Fork the chunk's child; True in the child."""
        self.forks += 1
        basetemp = str(self.base / f"chunk-{self.forks}") if self.base is not None else ""
        pid = os.fork()
        if pid == 0:  # the child: it runs the chunk and nothing else
            sel.close()
            listener.close()
            for other in [*attached, *(c.conn for c in children.values())]:
                with contextlib.suppress(OSError):
                    other.close()
            conn.setblocking(True)
            self.out = conn.makefile("wb")
            self.in_child = True
            request["basetemp"] = basetemp
            self.send({"forked": os.getpid()})
            return True
        children[pid] = _Child(pid, conn, basetemp)
        return False

    def _forget_basetemp(self, path: str) -> None:
        """Keep the temporary directories of the last three chunks, as pytest keeps the
        last three runs'."""
        if not path:
            return
        self.finished.append(path)
        keep = 3
        try:
            keep = int(self.config.getini("tmp_path_retention_count"))
        except (ValueError, TypeError) as exc:  # pytest < 7.3 has no such option
            _note("tmp_path_retention_count", exc)
        while len(self.finished) > keep:
            import shutil

            shutil.rmtree(self.finished.pop(0), ignore_errors=True)

    # --- in the child ---------------------------------------------------------------------

    def _run_chunk(self, session: Any, request: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # a cancel kills the chunk and what its tests started
        _die_with_parent()
        self._fresh_capture()
        workerinput = getattr(self.config, "workerinput", None)
        for name, key in (("PYTEST_XDIST_WORKER", "workerid"),
                          ("PYTEST_XDIST_WORKER_COUNT", "workercount"),
                          ("PYTEST_XDIST_TESTRUNUID", "testrunuid")):
            if key in request:  # as pytest-xdist sets them: tests use them to stay apart
                os.environ[name] = str(request[key])
                if isinstance(workerinput, dict):
                    workerinput[key] = request[key]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None and request.get("basetemp"):
            factory._given_basetemp = Path(request["basetemp"])
            factory._basetemp = None
        known = []
        for nodeid in request.get("run", []):
            item = self.items.get(nodeid)
            if item is None:
                self.send({"done": nodeid, "outcome": "error", "duration": 0.0, "reports": [],
                           "message": "not collected by the pytest session on the worker"})
            else:
                known.append(item)
        try:
            for i, item in enumerate(known):
                nextitem = known[i + 1] if i + 1 < len(known) else None
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                self._send_finished()
                if session.shouldstop or session.shouldfail:
                    break
        except pytest.exit.Exception as exc:
            self.send({"exit_requested": str(exc.msg), "returncode": exc.returncode})
            raise
        except KeyboardInterrupt:
            self.send({"exit_requested": "KeyboardInterrupt", "returncode": 2})
            raise
        self.send({"end": True})

    def _fresh_capture(self) -> None:
        """The child captures into files of its own: output of a killed sibling, left in
        the files it shared with the server, never shows up in this chunk's reports."""
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        current = getattr(capman, "_global_capturing", None)
        if current is None:
            return
        try:
            current.stop_capturing()
        except (OSError, ValueError, AssertionError) as exc:  # closed already
            _note("stopping the server's capture", exc)
        capman._global_capturing = None
        capman.start_global_capturing()
        capman.suspend_global_capture()


class _Child:
    def __init__(self, pid: int, conn: socket.socket, basetemp: str) -> None:
        self.pid = pid
        self.conn = conn
        self.basetemp = basetemp

    def reaped(self) -> int | None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        if pid == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


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
