"""Id validation and derivation: ids end up in NATS subjects, so they are strict tokens."""

from __future__ import annotations

import hashlib
import re

from dtf_core.errors import InvalidInput

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a safe subject token, else raise InvalidInput naming it."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ -"
        )
    return value


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


_SEEN_VALID: set[str] = set()
_SEEN_MAX = 200_000


def is_valid_token(value: str) -> bool:
    """``is_valid_id`` for the hot path of decoding the log, where each id comes back
    several times: ids checked recently are remembered (a bounded set)."""
    if value in _SEEN_VALID:
        return True
    if ID_PATTERN.fullmatch(value) is None:
        return False
    if len(_SEEN_VALID) >= _SEEN_MAX:
        _SEEN_VALID.clear()
    _SEEN_VALID.add(value)
    return True


def task_id_for_key(idempotency_key: str) -> str:
    """The task id that an idempotency key always maps to, so a resubmit finds its task."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return "k-" + digest[:40]


def child_id(parent: str, index: int) -> str:
    """A deterministic id for the index-th task of a submission with id ``parent``."""
    digest = hashlib.sha256(f"{parent}/{index}".encode()).hexdigest()
    return "t-" + digest[:24]
