"""How many cores this process may use, and the share a helper beside the stack takes."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The cores this process may run on (its affinity, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def half_the_cores(cpus: int | None = None) -> int:
    """Half of ``cpus`` (default: the usable ones), at least one: what nats-server's Go
    (ADR 0023) and the projector's DuckDB may use on a host they share with the stack's
    single-threaded Python agents."""
    return max(1, (usable_cpus() if cpus is None else cpus) // 2)
