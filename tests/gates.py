"""A gate for the tasks a test runs: they block on it until the test opens it.

The test holds an exclusive ``flock`` on a file; a gated task takes a shared lock on the
same file, so it waits in the kernel (no polling, no sleep) until ``open()``, and a task
started after that passes at once. The test decides when a task may finish.
"""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path
from typing import IO

from dtf_core.spec import TaskSpec, command_spec


class Gate:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self._held: IO[bytes] | None = open(path, "rb")
        fcntl.flock(self._held, fcntl.LOCK_EX)

    def script(self, then: str = "") -> str:
        """Python source that waits at the gate, then runs ``then``."""
        return (f"import fcntl\nfcntl.flock(open({str(self.path)!r}, 'rb'), fcntl.LOCK_SH)\n"
                + then)

    def argv(self, then: str = "") -> list[str]:
        return [sys.executable, "-c", self.script(then)]

    def task(self) -> TaskSpec:
        return command_spec(self.argv())

    def open(self) -> None:
        if self._held is not None:
            fcntl.flock(self._held, fcntl.LOCK_UN)
            self._held.close()
            self._held = None
