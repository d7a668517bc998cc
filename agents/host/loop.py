"""The event loop of DTF's processes (the agents: control, api, scheduler, recovery,
projector, http, workers; and the CLI's commands that talk to a stack, `dtf wait` and
`dtf logs -f` among them): uvloop where it is installed, asyncio's own otherwise.

uvloop handles a message in about three quarters of the CPU time, and every task's
submission, lease and report passes through the control plane and a worker
(docs/performance.md). A worker that runs tasks as another user (``--task-user``), ``dtf
up`` and the autoscaler stay on asyncio's loop: uvloop's subprocesses take no ``user`` or
``group``. ``DTF_EVENT_LOOP=asyncio`` turns uvloop off.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "DTF_EVENT_LOOP"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's (not installed, or turned off)."""
    choice = os.environ.get(ENV, "uvloop") if choice is None else choice
    if choice == "asyncio":
        return None
    if choice != "uvloop":
        raise ValueError(f"{ENV} must be 'uvloop' or 'asyncio', not {choice!r}")
    try:
        import uvloop
    except ImportError:  # Windows, or an install without it
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, spawns_as_user: bool = False) -> T:
    """``asyncio.run(main)`` on the agents' loop; ``spawns_as_user``: ``main`` starts
    processes as another user (asyncio's loop, then)."""
    factory = None if spawns_as_user else loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
