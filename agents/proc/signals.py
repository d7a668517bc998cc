"""The signals a daemon stops on, a child is stopped with, and SIGPIPE: carried out as
``plan.py`` decides for this platform."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agents.proc.plan import (
    Platform,
    StopSignals,
    broken_pipe_signal,
    platform_of,
    stop_child_signal,
    stop_signals,
)

if TYPE_CHECKING:  # not imported by a client's `dtf` for SIGPIPE alone
    import asyncio

PLATFORM = platform_of()


def on_stop_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], Any],
                    plan: StopSignals | None = None) -> None:
    """Call ``callback`` in ``loop`` on SIGINT/SIGTERM (Windows: Ctrl-C, Ctrl-Break)."""
    plan = plan or stop_signals(PLATFORM)
    for name in plan.names:
        sig = getattr(signal, name)
        if plan.via == "loop":
            loop.add_signal_handler(sig, callback)
        else:
            signal.signal(sig, lambda _sig, _frame: loop.call_soon_threadsafe(callback))


def stop_child(proc: asyncio.subprocess.Process, platform: Platform = PLATFORM) -> None:
    """Ask a child to stop cleanly (SIGTERM; Windows: Ctrl-Break to the process group
    of its own that ``spawning_daemon`` started it in)."""
    proc.send_signal(getattr(signal, stop_child_signal(platform)))


def default_broken_pipe(platform: Platform = PLATFORM) -> None:
    """A closed stdout ends the process quietly, where SIGPIPE exists."""
    name = broken_pipe_signal(platform)
    if name is not None:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
