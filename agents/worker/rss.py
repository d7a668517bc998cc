"""The peak memory of a task's process tree: sampled while it runs (psutil), the sum of the
resident set sizes of the process and all its descendants at each sample, and on Linux the
process's own high-water mark (VmHWM), which catches a peak between two samples.

Samples come often at first (short tasks) and then every MAX_INTERVAL_S. A descendant
that starts and ends between two samples is not seen: the figure is a lower bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import psutil

FIRST_INTERVAL_S = 0.005
MAX_INTERVAL_S = 0.25
MB = 1024 * 1024


def _high_water_mb(pid: int) -> float:
    """Linux: the process's peak RSS so far (VmHWM), else 0."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    with contextlib.suppress(psutil.Error):
        for proc in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
    return total / MB


class PeakRss:
    """Watch ``pid``'s tree until ``stop()``; ``peak_mb`` is the largest figure seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._task: asyncio.Task[None] | None = None
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def sample(self) -> None:
        if self._root is None:
            return
        self.peak_mb = max(self.peak_mb, tree_rss_mb(self._root), _high_water_mb(self.pid))

    def start(self) -> None:
        self.sample()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        interval = FIRST_INTERVAL_S
        while True:
            await asyncio.sleep(interval)
            self.sample()
            interval = min(interval * 2, MAX_INTERVAL_S)

    async def stop(self) -> float | None:
        """The peak in MB (None when nothing was measured); samples once more first."""
        self.sample()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return round(self.peak_mb, 2) if self.peak_mb > 0 else None
