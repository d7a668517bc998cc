"""Appending groups of events with optimistic concurrency, batched and split on conflict.

A group is the events of one aggregate that must land together (only its first event
carries the expected-sequence check). Groups are packed into atomic batches; when a batch
is refused for a conflict or a repeated message id, it is split until the loser is alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.log.port import (
    MAX_BATCH,
    Append,
    AppendConflict,
    Appended,
    DuplicateBatch,
    EventLog,
)

Group = Sequence[Append]


async def append_groups(log: EventLog, groups: Sequence[Group]) -> list[Appended | None]:
    """Append every group; returns each group's sequences, or None for a conflicting group."""
    results: list[Appended | None] = [None] * len(groups)
    for lo, hi in _chunks(groups):
        await _append_range(log, groups, lo, hi, results)
    return results


def _chunks(groups: Sequence[Group]) -> list[tuple[int, int]]:
    chunks: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, g in enumerate(groups):
        if size + len(g) > MAX_BATCH and i > start:
            chunks.append((start, i))
            start, size = i, 0
        size += len(g)
    if start < len(groups):
        chunks.append((start, len(groups)))
    return chunks


async def _append_range(
    log: EventLog,
    groups: Sequence[Group],
    lo: int,
    hi: int,
    results: list[Appended | None],
) -> None:
    flat = [a for g in groups[lo:hi] for a in g]
    if not flat:
        for i in range(lo, hi):
            results[i] = Appended()
        return
    try:
        seqs = await log.append(flat)
    except (AppendConflict, DuplicateBatch):
        if hi - lo == 1:
            if len(flat) > 1:
                await _append_singles(log, groups[lo], lo, results)
            return
        mid = (lo + hi) // 2
        await _append_range(log, groups, lo, mid, results)
        await _append_range(log, groups, mid, hi, results)
        return
    pos = 0
    for i in range(lo, hi):
        n = len(groups[i])
        part = seqs[pos : pos + n]  # duplicates are rare: most batches carry none
        results[i] = Appended.of(part, seqs.duplicates.intersection(part)) \
            if seqs.duplicates else Appended(part)
        pos += n


async def _append_singles(
    log: EventLog, group: Group, index: int, results: list[Appended | None]
) -> None:
    """A resent group whose batch repeats message ids: append one by one (duplicates return
    their original sequence); a conflict on the first means the group is refused."""
    seqs: list[int] = []
    duplicates: list[int] = []
    for item in group:
        try:
            got = await log.append([item])
        except AppendConflict:
            if not seqs:
                return
            raise
        seqs.extend(got)
        duplicates.extend(got.duplicates)
    results[index] = Appended.of(seqs, duplicates)
