"""Host-wide files the worker and ``dtf up`` share between processes, on any OS: an
exclusive lock on an open file (``plan.lock_call``), and the per-account name of a
temporary directory. ``fcntl`` and ``msvcrt`` are imported where used: each exists on one
kind of OS only.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import IO, Any

from agents.proc.plan import Platform, lock_call, platform_of

PLATFORM = platform_of()
# Windows: the byte locked, far past any lock file's content (its locks are mandatory)
MSVCRT_LOCK_OFFSET = 0x7FFFFFFF


def try_lock(f: IO[Any], platform: Platform = PLATFORM) -> bool:
    """Take an exclusive lock on the open file ``f`` without waiting: True when taken
    (held until ``unlock`` or until ``f`` is closed), False when another open file holds
    it (in this process or another)."""
    if lock_call(platform) == "flock":
        return _flock(f, lock=True)
    return _msvcrt(f, lock=True)


def unlock(f: IO[Any], platform: Platform = PLATFORM) -> None:
    """Let go of ``try_lock``'s lock now (closing ``f`` does too, later on Windows)."""
    if lock_call(platform) == "flock":
        _flock(f, lock=False)
    else:
        _msvcrt(f, lock=False)


def release(f: IO[Any], platform: Platform = PLATFORM) -> None:
    """Unlock and close ``f`` (a file that may not hold the lock: it is closed)."""
    try:
        if not f.closed:
            unlock(f, platform)
    except OSError:
        pass  # not held by this file: closing is all there is to do
    finally:
        f.close()


def _flock(f: IO[Any], *, lock: bool) -> bool:
    if sys.platform == "win32":  # lock_call: flock on POSIX
        raise NotImplementedError("fcntl.flock is POSIX's (plan.lock_call)")
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB if lock else fcntl.LOCK_UN)
    except OSError:
        if not lock:
            raise
        return False
    return True


def _msvcrt(f: IO[Any], *, lock: bool) -> bool:
    if sys.platform != "win32":  # lock_call: msvcrt on Windows
        raise NotImplementedError("msvcrt.locking is Windows' (plan.lock_call)")
    import msvcrt

    where = f.tell()
    f.seek(MSVCRT_LOCK_OFFSET)
    try:
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)
    except OSError:
        if not lock:
            raise
        return False
    finally:
        f.seek(where)
    return True


def account_tag() -> str:
    """This process's account, for a temporary directory's name shared by its processes
    (``dtf-slots-1000``): the uid on POSIX, the user name elsewhere (Windows' temporary
    directory is already the account's own)."""
    getuid = getattr(os, "getuid", None)
    if getuid is not None:
        return str(getuid())
    try:
        user = getpass.getuser()  # %USERNAME%; with none set, it asks pwd (POSIX)
    except (ImportError, KeyError, OSError):
        user = ""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in user) or "user"
