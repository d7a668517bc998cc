"""Private key files: created once with mode 0600, refused when group or others can read them.

Writes are atomic (a temporary file, fsync, then link or rename) so a crash never leaves a
half-written key. Reads open without following symlinks and check the mode of the open file.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.auth.errors import KeyFileError
from agents.proc.plan import platform_of, private_file_plan

FILE_MODE = 0o600
DIR_MODE = 0o700
MAX_KEY_FILE_BYTES = 1 << 20
PLAN = private_file_plan(platform_of())
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none: a symlink is refused by lstat


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (mode 0700) if missing."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def read_secret_file(path: Path) -> bytes:
    """Read a key file; refuse symlinks, non-regular files and any group/other mode bit
    (where mode bits mean something: ``plan.private_file_plan``)."""
    if not NOFOLLOW and path.is_symlink():
        raise KeyFileError(f"cannot open key file {path}: it is a symbolic link")
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if PLAN.mode_bits and mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {mode:04o}: it must not be accessible by group"
                f" or others; run `chmod 600 {path}`"
            )
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes")
    return data


def _write_temp(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            if PLAN.mode_bits:
                _fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fchmod(fd: int, mode: int) -> None:
    if sys.platform == "win32":  # mode bits are POSIX's (PLAN.mode_bits)
        raise NotImplementedError("no POSIX mode bits on Windows (plan.private_file_plan)")
    os.fchmod(fd, mode)


def _fsync_dir(directory: Path) -> None:
    if not PLAN.fsync_dir:
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_secret_file(path: Path, data: bytes) -> None:
    """Write a new key file (mode 0600); refuse if one exists, so a key is created once."""
    ensure_private_dir(path.parent)
    tmp = _write_temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def replace_secret_file(path: Path, data: bytes) -> None:
    """Atomically replace an existing key file's content, keeping mode 0600."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def create_private_key_file(path: Path) -> Ed25519PrivateKey:
    """Generate an Ed25519 key and store it once as PKCS#8 PEM with mode 0600."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    create_secret_file(path, pem)
    return key


def load_private_key_file(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 PKCS#8 PEM key file written by ``create_private_key_file``."""
    data = read_secret_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} does not hold an Ed25519 key")
    return key


def load_or_create_private_key_file(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``, generated and stored on first use (e.g. a worker's own key)."""
    if path.exists() or path.is_symlink():
        return load_private_key_file(path)
    try:
        return create_private_key_file(path)
    except KeyFileError:
        if path.exists():  # another process created it first
            return load_private_key_file(path)
        raise
