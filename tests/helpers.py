"""Helpers the tests import (fixtures live in the conftest.py files): waiting on state that
other processes own, without sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.01


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0,
                what: str = "") -> None:
    """Await ``check`` until it holds (state owned by other processes), failing after timeout."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 (polling other processes)
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what or check}") from None


def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll a predicate until it holds (for waits on other processes), failing after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(POLL_S)


# The older system's example benchmark task (its docs), exactly as written.
SEED_BENCHMARK = {
    "type": "benchmark", "priority": 1,
    "config": {"model": "bert-base-uncased", "batch_sizes": [1, 2, 4, 8, 16],
               "precision": "fp16", "iterations": 100},
    "requirements": {"hardware": ["cuda"], "min_memory_gb": 8, "min_cuda_compute": 7.5},
    "timeout_seconds": 1800, "retry_policy": {"max_retries": 3, "retry_delay_seconds": 60},
    "dependencies": [],
}
