"""The event-log port: what agents need from a log, as a Protocol with two adapters.

``JetStreamLog`` is the real one; ``MemoryLog`` is for fast unit tests. Both pass
``tests/contract/test_eventlog_contract.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from dtf_core.errors import Conflict, DTFError

MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Append:
    """One message to append. ``expect_seq`` is checked against the last sequence stored on
    any subject matching ``expect_filter`` (0 means "nothing stored there yet")."""

    subject: str
    data: bytes
    msg_id: str
    expect_seq: int | None = None
    expect_filter: str | None = None


class Record(msgspec.Struct, frozen=True, gc=False):
    """One stored message. A struct, not a dataclass: a replay builds a million of them,
    and a frozen dataclass takes ten times as long to build."""

    seq: int
    subject: str
    data: bytes
    time: float
    raw_headers: bytes | None = None  # the NATS header block, as stored

    @property
    def headers(self) -> dict[str, str] | None:
        """The headers, parsed when asked for (few readers want them)."""
        return parse_headers(self.raw_headers) if self.raw_headers else None


def parse_headers(raw: bytes) -> dict[str, str]:
    """A NATS header block (after its "NATS/1.0 ..." line): ``Name: value`` per line."""
    out = {}
    for line in raw.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out[name.strip().decode("ascii", "replace")] = value.strip().decode(
                "utf-8", "replace")
    return out


class Appended(list[int]):
    """The sequences of an append, in order. ``duplicates``: those of messages the log held
    already (a resend within the duplicate window): the log keeps its first copy, which may
    differ from this one (decided again, at another time), so a writer must not fold its
    own copy of those: its fold delivers the stored one."""

    duplicates: frozenset[int] = frozenset()

    @classmethod
    def of(cls, seqs: Iterable[int], duplicates: Iterable[int] = ()) -> Appended:
        out = cls(seqs)
        out.duplicates = frozenset(duplicates)
        return out


class AppendConflict(Conflict):
    """An expected-sequence check failed; nothing of the batch was written."""


class DuplicateBatch(DTFError):
    """A batch repeated a message id still in the duplicate window; nothing was written."""


class Tail(Protocol):
    """Live records from a start sequence, in batches of whatever is available."""

    pending: int

    def __aiter__(self) -> AsyncIterator[list[Record]]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def empty(self) -> bool:
        """True when nothing matched at the start and nothing has arrived."""
        ...

    async def __aenter__(self) -> Tail: ...

    async def __aexit__(self, *exc: object) -> None: ...


class EventLog(Protocol):
    async def append(self, batch: Sequence[Append]) -> Appended:
        """Append atomically (all or nothing) and return the sequences.

        A single message whose id is a duplicate returns the original sequence (listed in
        ``duplicates``), but only if its ``expect_seq`` still holds: JetStream checks the
        expectation first, so the resend of an applied conditional append raises
        AppendConflict.
        Raises AppendConflict, DuplicateBatch, or InvalidInput (more than MAX_BATCH).
        """
        ...

    async def read(self, filters: Sequence[str], start_seq: int = 1) -> list[Record]:
        """Everything stored now on the filters, from ``start_seq``, in order."""
        ...

    def tail(self, filters: Sequence[str], start_seq: int = 1) -> Tail:
        """Records from ``start_seq`` on, forever; ``pending`` says how many are known to follow."""
        ...

    async def last_seq(self) -> int: ...

    async def last_seq_on(self, filters: Sequence[str]) -> int:
        """The sequence of the newest message on any of ``filters`` (0: none)."""
        ...


def covering_filter(filters: Sequence[str]) -> str | None:
    """One filter that matches everything each of ``filters`` matches (their common leading
    tokens, then ``>``), or None when they share no leading token."""
    split = [f.split(".") for f in filters]
    prefix: list[str] = []
    for tokens in zip(*split, strict=False):
        if tokens[0] == ">" or any(t != tokens[0] for t in tokens):
            break
        prefix.append(tokens[0])
    if not prefix or any(len(s) == len(prefix) for s in split):
        return None  # a filter that is all prefix would not match "prefix.>"
    return ".".join([*prefix, ">"])
