"""The fork server's side of its socket, and its process plumbing: serving the workers
that attach, forking a child per chunk, and keeping the protocol's pipes out of tests'
reach. Standard library and msgspec only: the session loads this file by path.

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
import io
import json
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

import msgspec

_encode = msgspec.json.Encoder().encode

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


def bind(path: str) -> tuple[socket.socket, int]:
    """The server's socket, put in place atomically (a retired server's may be there), and
    its inode (to tell whether a newer server has replaced it since)."""
    if sys.platform == "win32":  # the fork server: POSIX only (plan.chunk_runner)
        raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(64)
    os.rename(tmp, path)
    return listener, os.stat(path).st_ino


def fork() -> int:
    """``os.fork``: POSIX only, as the whole fork server is (plan.chunk_runner)."""
    if sys.platform == "win32":
        raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
    return os.fork()


class Serving:
    """A fork server's socket, children and their temporary directories (ForkServer's)."""

    out: IO[bytes]
    in_child: bool
    info: dict[str, Any]
    accepted: set[str]
    socket_path: str
    socket_inode: int
    base: Path | None  # the server's temporary directory
    forks: int
    finished: list[str]  # basetemps of ended children, oldest first

    def send(self, obj: dict[str, Any]) -> None:
        self.out.write(_encode(obj) + b"\n")
        self.out.flush()

    def retention(self) -> int:
        """How many ended chunks' temporary directories to keep (pytest's setting)."""
        return 3

    def _listen(self, path: str) -> socket.socket:
        listener, self.socket_inode = bind(path)
        self.socket_path = path
        return listener

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
        children: dict[int, Child] = {}
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
                    if not serving:  # retired while this select's events were handled
                        continue
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
              children: dict[int, Child], attached: dict[socket.socket, bytes]) -> bool:
        """Fork the chunk's child; True in the child."""
        self.forks += 1
        basetemp = str(self.base / f"chunk-{self.forks}") if self.base is not None else ""
        pid = fork()
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
        children[pid] = Child(pid, conn, basetemp)
        return False

    def _forget_basetemp(self, path: str) -> None:
        """Keep the temporary directories of the last three chunks, as pytest keeps the
        last three runs'."""
        if not path:
            return
        self.finished.append(path)
        keep = self.retention()
        while len(self.finished) > keep:
            import shutil

            shutil.rmtree(self.finished.pop(0), ignore_errors=True)


class Child:
    def __init__(self, pid: int, conn: socket.socket, basetemp: str) -> None:
        self.pid = pid
        self.conn = conn
        self.basetemp = basetemp

    def reaped(self) -> int | None:
        if sys.platform == "win32":  # the fork server: POSIX only (plan.chunk_runner)
            raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        if pid == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        if sys.platform == "win32":  # the fork server: POSIX only (plan.chunk_runner)
            raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
