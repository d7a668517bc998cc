"""Is a fork server's collection still what pytest would collect now?

While a session collects, an audit hook records the files it reads (sources it imports,
conftests, ini files, data that parametrises tests) and the directories the import system
lists (only names that can be imported or that hold package metadata count, so files a
test writes next to the code, say ``test.edgelist``, do not; nor do caches). A server is
reused only while all of it is unchanged: a changed source or a new module or package
starts a fresh one. That it collected what the submitter collected (a new test file, say)
is checked against the run's plan (``collection_digest``).

Standard library only: the session loads this file by path, so nothing of DTF is importable
in the tests' process.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
from typing import Any

IMPORT_SUFFIXES = (*importlib.machinery.all_suffixes(), ".dist-info", ".egg-info", ".pth",
                   ".egg-link")
SKIP = ("/proc/", "/dev/", "/sys/")
# Caches: read while collecting, rewritten by every run (pytest's own cache, bytecode).
CACHES = ("__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", ".git")
# pytest (8+) makes its cache directory as a temporary one beside it, then renames it: a
# run that starts or ends on the host may have one in the root for a moment.
TEMPORARY = ("pytest-cache-files-",)


class Recorder:
    """Collects what a session reads while ``on`` (an audit hook cannot be removed)."""

    def __init__(self) -> None:
        self.on = True
        self.files: set[str] = set()
        self.listed: set[str] = set()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.on:
            return
        if event == "open":
            path, mode, flags = args
            if isinstance(path, (str, bytes)) and _reads(mode, flags):
                self.files.add(os.path.abspath(os.fsdecode(path)))
        elif event == "os.listdir":
            path = args[0] if args and args[0] is not None else "."
            if isinstance(path, (str, bytes)):
                self.listed.add(os.path.abspath(os.fsdecode(path)))

    def snapshot(self) -> list[list[Any]]:
        self.on = False
        return snapshot(self.files, self.listed)


def _reads(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return not any(c in mode for c in "wax+")
    return isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR) == 0


def _listing(path: str) -> str:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return "-"
    names = [n for n in names if not n.startswith((".", *TEMPORARY)) and n != "__pycache__"
             and ("." not in n or n.endswith(IMPORT_SUFFIXES))]
    return hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


def snapshot(files: set[str], listed: set[str]) -> list[list[Any]]:
    """``[kind, path, state]`` for each: ``f`` a file (mtime and size), ``l`` a directory
    the import system listed (its importable names)."""
    out: list[list[Any]] = []
    for path in sorted(files):
        if path.startswith(SKIP) or any(c in path.split(os.sep) for c in CACHES):
            continue
        if os.path.isdir(path):  # opened as a directory (to list it, or to sync it): its
            listed = listed | {path}  # names count, not its mtime, which any new cache moves
            continue
        out.append(["f", path, _stat(path)])
    for path in sorted(listed):
        out.append(["l", path, _listing(path)])
    return out


def collection_digest(node_ids: list[str]) -> str:
    """What was collected, whatever the order: the submitter's and the session's must be
    equal for the session to run the submitter's plan."""
    return hashlib.sha256("\n".join(sorted(node_ids)).encode("utf-8",
                                                             "surrogateescape")).hexdigest()


def changed(deps: list[list[Any]]) -> str | None:
    """The first dependency that is not as recorded, or None when all are."""
    for kind, path, state in deps:
        now = _stat(path) if kind == "f" else _listing(path)
        if now != state:
            return str(path)
    return None
