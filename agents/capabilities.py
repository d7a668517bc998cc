"""What this host offers, detected for real with psutil and platform. Never raises."""

from __future__ import annotations

import logging
import platform
import sys

import psutil

from dtf_core.events.worker import Capabilities

log = logging.getLogger(__name__)


def detect(tags: tuple[str, ...] = (), disk_path: str = ".") -> Capabilities:
    try:
        disk_gb = psutil.disk_usage(disk_path).free / 1024**3
    except OSError as exc:
        log.info("disk space not detected: %s", exc)
        disk_gb = 0.0
    return Capabilities(
        cpu_count=psutil.cpu_count(logical=True) or 1,
        memory_gb=round(psutil.virtual_memory().total / 1024**3, 2),
        disk_gb=round(disk_gb, 2),
        platform=platform.system().lower(),
        machine=platform.machine(),
        python=platform.python_version(),
        hardware=("cpu",),
        tags=tuple(tags),
    )


def python_executable() -> str:
    return sys.executable
