"""A small error hierarchy shared by every layer."""

from __future__ import annotations


class DTFError(Exception):
    """Base of every error DTF raises on purpose; its message is shown to users as is."""

    retryable: bool = False


class InvalidInput(DTFError):
    """Input that can never succeed: a bad id, a bad field, an oversized payload."""


class NotFound(DTFError):
    """An id that names nothing."""


class Refused(DTFError):
    """A command the current state does not allow (e.g. cancelling a finished task)."""


class Conflict(DTFError):
    """An optimistic-concurrency check failed: someone else appended first."""

    retryable = True


class Unavailable(DTFError):
    """The server or an agent did not answer."""

    retryable = True
