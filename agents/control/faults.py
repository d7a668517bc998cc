"""Fault points for the chaos suite: ``DTF_FAULTS=name@N`` (``arm``ed by the agent's
launch) makes the Nth pass through ``point(name)`` kill its own process with SIGKILL, as
a crash at exactly that line would.

Each named fault fires once per data dir (a marker file records it), so a supervisor that
restarts the process does not crash it again. Unset (always, outside chaos tests), a point
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_counts: dict[str, int] = {}
ARMED: dict[str, int] = {}
_markers = Path(".dtf") / "faults"


def arm(spec: str, data_dir: str) -> None:
    """``spec``: ``name@N,...`` (DTF_FAULTS); markers go under ``data_dir``."""
    global _markers
    _markers = Path(data_dir) / "faults"
    ARMED.clear()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, nth = item.partition("@")
        ARMED[name] = int(nth or "1")


def point(name: str) -> None:
    nth = ARMED.get(name)
    if nth is None:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] != nth:
        return
    marker = _markers / name
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        with open(marker, "x"):  # fired already for this data dir: carry on
            pass
    except FileExistsError:
        return
    # Windows has no SIGKILL: os.kill with SIGTERM there is TerminateProcess, as abrupt
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
