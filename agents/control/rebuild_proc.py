"""A projection rebuild in a process of its own, fed the log's raw records through a pipe.

`dtf audit verify` reads the log once and checks it on one core; rebuilding the projection
(decoding again, folding the rows, writing and hashing them) is most of its work, and in
this child it runs on another core at the same time (docs/performance.md). Messages both
ways are length-prefixed frames; the child answers ``ok:`` once its database is open,
``ok:<hash>`` after the empty frame that ends the records, or ``error:<why>``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import BinaryIO

import msgspec

from agents.log.port import Record
from agents.proc.tree import spawning
from dtf_core.errors import DTFError

Raw = tuple[int, str, bytes]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Raw]).decode
HEADER = 4


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "big") + payload


class RebuildProcess:
    """``Rebuild``'s open, feed and finish, done by a child process: ``feed`` hands it a
    batch and returns while the child folds it (one batch buffered at most, in log order)."""

    def __init__(self, db_path: str | Path, until_seq: int) -> None:
        self.path = Path(db_path)
        self.until = until_seq
        self._proc: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        spawn = spawning()  # dies with this process, even by SIGKILL
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agents.control.rebuild_proc", str(self.path),
            str(self.until), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, **spawn.kwargs())
        spawn.adopt(self._proc.pid)
        await self._answer()  # the child opened its database, or says why not

    async def feed(self, records: list[Record]) -> None:
        rows = [(r.seq, r.subject, r.data) for r in records if r.seq <= self.until]
        if rows:
            await self._send(_encode(rows))

    async def finish(self) -> str:
        """The rebuilt tables' hash, once the child has folded and written everything."""
        await self._send(b"")
        return await self._answer()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _send(self, payload: bytes) -> None:
        stdin = self._live().stdin
        assert stdin is not None
        try:
            await stdin.drain()  # the batch before has left: memory stays at one batch
            stdin.write(frame(payload))  # sent by the loop while this process folds
        except (BrokenPipeError, ConnectionResetError):
            await self._answer()  # the child is gone: its last word says why
            raise DTFError("the rebuild process stopped reading") from None

    async def _answer(self) -> str:
        stdout = self._live().stdout
        assert stdout is not None
        try:
            size = int.from_bytes(await stdout.readexactly(HEADER), "big")
            reply = await stdout.readexactly(size)
        except asyncio.IncompleteReadError:
            code = await self._live().wait()
            raise DTFError(f"the rebuild process ended without an answer (exit code "
                           f"{code})") from None
        kind, _, text = reply.decode().partition(":")
        if kind != "ok":
            raise DTFError(f"rebuilding the projection failed: {text}")
        return text

    def _live(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise DTFError("the rebuild process is not started")
        return self._proc


def _read_frame(source: BinaryIO) -> bytes | None:
    """The next frame's payload; None at the end of the input (the parent is gone)."""
    head = source.read(HEADER)
    if len(head) < HEADER:
        return None
    size = int.from_bytes(head, "big")
    payload = source.read(size)
    return payload if len(payload) == size else None


async def serve(db_path: str, until_seq: int, source: BinaryIO, sink: BinaryIO) -> None:
    """The child: a ``Rebuild`` fed the frames of ``source`` until the empty one."""
    from agents.control.rebuild import Rebuild

    def say(text: str) -> None:
        sink.write(frame(text.encode()))
        sink.flush()

    try:
        job = Rebuild(db_path, until_seq)
        await job.open()
    except Exception as exc:
        say(f"error:{type(exc).__name__}: {exc}")
        return
    try:
        say("ok:")
        while payload := _read_frame(source):
            await job.feed([Record(seq, subject, data, 0.0)
                            for seq, subject, data in _decode(payload)])
        if payload is None:
            return  # the parent went away: nobody to answer
        say(f"ok:{await job.finish()}")
    except Exception as exc:  # the parent reads why, not a traceback on stderr
        say(f"error:{type(exc).__name__}: {exc}")
    finally:
        await job.close()


if __name__ == "__main__":
    gc.disable()  # a million objects made, none in a cycle
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer))
