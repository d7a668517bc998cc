"""The retry decision: a pure function of the attempt number and the policy."""

from __future__ import annotations

import hashlib

from dtf_core.spec import RetryPolicy


def may_retry(failures: int, policy: RetryPolicy) -> bool:
    """An attempt failed after ``failures`` earlier counted failures: may another one run?"""
    return failures < policy.max_retries


def retry_delay(retry: int, policy: RetryPolicy, key: str = "") -> float:
    """Seconds to wait before the ``retry``-th retry (1-based): ``retry_delay_seconds``
    times ``backoff`` to the power ``retry - 1``, capped at ``max_delay_seconds``, then
    spread by up to ±``jitter`` (a fraction). The jitter is a hash of ``key`` (the task id)
    and the retry number, not a random draw, so a replay decides exactly as the original."""
    base = policy.retry_delay_seconds * policy.backoff ** max(0, retry - 1)
    if policy.max_delay_seconds is not None:
        base = min(base, policy.max_delay_seconds)
    if policy.jitter <= 0 or base <= 0:
        return base
    digest = hashlib.blake2b(f"{key}:{retry}".encode(), digest_size=8).digest()
    unit = int.from_bytes(digest, "big") / 2**64  # [0, 1)
    return max(0.0, base * (1 + policy.jitter * (2 * unit - 1)))
