"""The retry decision: a pure function of the attempt number and the policy."""

from __future__ import annotations

from dtf_core.spec import RetryPolicy


def may_retry(failures: int, policy: RetryPolicy) -> bool:
    """An attempt failed after ``failures`` earlier counted failures: may another one run?"""
    return failures < policy.max_retries


def retry_delay(retry: int, policy: RetryPolicy) -> float:
    """Seconds to wait before the ``retry``-th retry (a fixed delay, as in the seed's policy)."""
    del retry
    return policy.retry_delay_seconds
