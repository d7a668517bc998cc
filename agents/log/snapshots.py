"""Board snapshots in the JetStream object store (bucket ``dtf-snapshots``, object
``board``), so that a cold start folds only the tail of the log.

The control plane writes one after every ``every_events`` folded events (or after
``every_s`` seconds with any change), and only while it holds the scheduler claim, so
replicas do not write the same snapshot twice. The capture is a copy of the board's
containers on the loop; encoding and upload happen off it. A missing, unreadable or
other-version snapshot is logged and ignored: the agent replays the whole log instead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import zlib
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from agents.log.fold import Folder
from dtf_core import subjects
from projections import snapshot
from projections.board import Board

log = logging.getLogger(__name__)
OBJECT = "board"
# Compressed: a board of specs repeats itself (a 64 MB snapshot of 100k tasks packs into a
# few MB), and nats-py reads an object back in time that grows with the square of its size.
LEVEL = 1
EVERY_EVENTS = 20_000  # the most a cold start folds after the snapshot (about 0.4 s)
EVERY_S = 600.0
CHECK_S = 1.0


async def load_into(js: JetStreamContext, board: Board) -> int:
    """Restore the newest snapshot into the empty ``board``; the position it includes (0
    when there is none, and the board stays empty)."""
    try:
        store = await js.object_store(subjects.SNAPSHOTS_BUCKET)
        result = await store.get(OBJECT)
    except (BucketNotFoundError, ObjectNotFoundError, NotFoundError):
        return 0
    packed = result.data or b""
    try:
        data = await asyncio.to_thread(_unpack, packed)
        position = _restore_without_gc(board, data)
    except snapshot.SnapshotMismatch as exc:  # raised before the board is touched
        log.warning("ignoring the stored snapshot (%s); replaying the whole log", exc)
        return 0
    log.info("loaded a snapshot at seq %d (%d tasks, %.1f MB packed)", position,
             len(board.tasks), len(packed) / 1e6)
    return position


def _restore_without_gc(board: Board, data: bytes) -> int:
    """A bulk load makes many objects that all live on: the cyclic collector, run on
    allocation counts, would scan them again and again (a third of the load's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return snapshot.restore(board, data)
    finally:
        if enabled:
            gc.enable()


def _unpack(packed: bytes) -> bytes:
    try:
        return zlib.decompress(packed)
    except zlib.error as exc:
        raise snapshot.SnapshotMismatch(f"not a compressed snapshot: {exc}") from None


def _pack(captured: snapshot.Captured) -> bytes:
    return zlib.compress(snapshot.encode_captured(captured), LEVEL)


async def save(js: JetStreamContext, board: Board, position: int) -> int:
    """Store a snapshot of ``board`` at ``position``; its size in bytes."""
    captured = snapshot.capture(board, position)
    data = await asyncio.to_thread(_pack, captured)
    store = await js.object_store(subjects.SNAPSHOTS_BUCKET)
    await store.put(OBJECT, data)
    return len(data)


class Snapshotter:
    def __init__(self, js: JetStreamContext, folder: Folder, *,
                 every_events: int = EVERY_EVENTS, every_s: float = EVERY_S,
                 allowed: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.js = js
        self.folder = folder
        self.every_events = every_events
        self.every_s = every_s
        self.allowed = allowed
        self.clock = clock
        self.saved_at = folder.position  # the position of the newest snapshot we know of
        self.saved_clock = clock()
        self.saved = asyncio.Event()  # set after each snapshot written (tests wait on it)

    def due(self) -> bool:
        behind = self.folder.position - self.saved_at
        if behind <= 0:
            return False
        return behind >= self.every_events or self.clock() - self.saved_clock >= self.every_s

    async def run(self) -> None:
        await self.folder.caught_up.wait()
        while True:
            if self.due() and self.allowed():
                position = self.folder.position
                try:
                    size = await save(self.js, self.folder.board, position)
                except Exception as exc:  # the store is down: try again at the next check
                    log.warning("snapshot at seq %d failed: %r", position, exc)
                else:
                    log.info("snapshot at seq %d stored (%.1f MB)", position, size / 1e6)
                    self.saved_at, self.saved_clock = position, self.clock()
                    self.saved.set()
            await asyncio.sleep(CHECK_S)  # a periodic check, not a synchronisation
