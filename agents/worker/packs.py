"""Content-addressed packs of a test root, so that code under test reaches other hosts.

The pack holds the root's tracked files plus uncommitted changes (``git ls-files -co
--exclude-standard``; outside git, every file but caches and virtualenvs). Its name is the
digest of a manifest of (path, mode, content hash), so a worker verifies what it unpacked
and caches it by that digest, as remote-execution systems do with input trees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import msgspec
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from agents.nats.objects import ObjectMissing, get_object
from dtf_core.errors import DTFError, InvalidInput
from dtf_core.spec import check_relative
from dtf_core.subjects import PACKS_BUCKET

# Never packed, even when git does not ignore them: caches, and what DTF itself writes into
# a project (`dtf up`'s data dir, `dtf ci`'s reports), which changes on every run.
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox",
             ".nox", "node_modules", ".dtf", ".hypothesis", "dtf-reports"}


def _skipped(rel: str) -> bool:
    """``rel``: a pack's path, POSIX-style on every OS (git's, or ``as_posix``)."""
    return any(part in SKIP_DIRS for part in PurePosixPath(rel).parent.parts)


MAX_PACK_BYTES = 512 * 1024 * 1024


def tree_files(root: Path) -> list[str]:
    """The files a run needs from ``root``, relative, sorted."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
            capture_output=True, check=True, timeout=60,
        ).stdout
        files = [f for f in out.decode("utf-8", "surrogateescape").split("\0") if f]
        return sorted(f for f in files if not _skipped(f) and (root / f).is_file()
                      and not (root / f).is_symlink())
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames
                       if d not in SKIP_DIRS and not d.startswith(".venv") and d != "venv"]
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith((".pyc", ".pyo")) or path.is_symlink():
                continue
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path, files: Iterable[str]) -> str:
    """The content address of a tree: its files' paths, modes and contents."""
    h = hashlib.sha256()
    for rel in sorted(files):
        path = root / rel
        mode = "755" if os.access(path, os.X_OK) else "644"
        h.update(f"{rel}\0{mode}\0{_file_hash(path)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def make_pack(root: Path, files: list[str]) -> bytes:
    """A deterministic tar.gz of ``files`` (no times, owners or links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for rel in sorted(files):
            path = root / rel
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    data = buf.getvalue()
    if len(data) > MAX_PACK_BYTES:
        raise InvalidInput(f"the test root packs to {len(data) >> 20} MiB, over the "
                           f"{MAX_PACK_BYTES >> 20} MiB limit; add large files to .gitignore")
    return data


def unpack(data: bytes, dest: Path) -> list[str]:
    """Extract safely: regular files only, relative paths only (no ``..``, no links)."""
    files: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            check_relative(m.name, "file in the pack")
            if not m.isfile():
                raise InvalidInput(f"the pack holds {m.name!r}, which is not a regular file")
            files.append(m.name)
        tar.extractall(dest, members=members, filter="data")
    return files


async def put_pack(js: JetStreamContext, root: Path, files: list[str], digest: str) -> bool:
    """Store the pack unless it is there already; True when it was uploaded now."""
    store = await js.object_store(PACKS_BUCKET)
    with contextlib.suppress(ObjectNotFoundError, NotFoundError):
        info = await store.get_info(digest)
        if info is not None and not info.deleted:
            return False
    await store.put(digest, make_pack(root, files))
    return True


async def fetch_pack(js: JetStreamContext, digest: str, cache_dir: Path) -> Path:
    """The unpacked tree of ``digest``, from the cache or the object store, verified."""
    dest = cache_dir / digest
    if (dest / ".dtf-pack-ok").exists():
        return dest
    try:
        data = await get_object(js, PACKS_BUCKET, digest)
    except ObjectMissing:
        raise DTFError(f"the code pack {digest[:12]} is not in the object store") from None
    return _install(data, digest, cache_dir)


async def working_copy(js: JetStreamContext, digest: str, cache_dir: Path) -> Path:
    """A copy of the verified pack for tests to run in: what they write (into their
    working directory, say) never changes the pack that later runs verify and copy."""
    dest = cache_dir / "work" / digest
    if not _is_ready(dest):
        _copy_tree(await fetch_pack(js, digest, cache_dir / "packs"), dest)
    return dest


def _is_ready(dest: Path) -> bool:
    return (dest / ".dtf-pack-ok").exists()


def _copy_tree(pristine: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name[:12]}-", dir=dest.parent))
    try:
        shutil.copytree(pristine, tmp, dirs_exist_ok=True)
        try:
            tmp.rename(dest)
        except OSError:  # another session copied it first
            if not _is_ready(dest):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _install(data: bytes, digest: str, cache_dir: Path) -> Path:
    dest = cache_dir / digest
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache_dir))
    try:
        files = unpack(data, tmp)
        if tree_digest(tmp, files) != digest:
            raise DTFError(f"the code pack {digest[:12]} does not match its digest")
        (tmp / ".dtf-pack-ok").write_text(digest)
        try:
            tmp.rename(dest)
        except OSError:  # another attempt unpacked it first
            if not (dest / ".dtf-pack-ok").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --- run plans: which tests each chunk of a run runs ------------------------------------

PLAN_PREFIX = "plan-"
COLLECTION_PREFIX = "collection-"


class RunPlan(msgspec.Struct, frozen=True):
    collection: str  # freshness.collection_digest of everything the submitter collected
    chunks: list[list[str]]


_plan_decoder = msgspec.json.Decoder(RunPlan)
# Waiting for a plan: a look every 25 ms while the submitter is most likely collecting
# (a late look is time the run loses), less often after that.
PLAN_POLL_S = 0.025
PLAN_POLL_SLOW_S = 0.25
PLAN_POLL_FAST_FOR_S = 30.0


def encode_plan(plan: RunPlan) -> bytes:
    return zlib.compress(msgspec.json.encode(plan), 1)


def decode_plan(name: str, data: bytes) -> RunPlan:
    try:
        return _plan_decoder.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError):
        raise DTFError(f"the run plan {name} is not readable") from None


async def put_plan(js: JetStreamContext, name: str, plan: RunPlan) -> None:
    """A run's chunks of node ids (any number of tests; ids of any length), under a name
    its tasks carry: the tasks may be submitted before the plan is made."""
    store = await js.object_store(PACKS_BUCKET)
    await store.put(PLAN_PREFIX + name, encode_plan(plan))


async def put_collection(js: JetStreamContext, key: str, data: bytes) -> None:
    """What a session key collected, for the next run to plan from before it collects."""
    store = await js.object_store(PACKS_BUCKET)
    await store.put(COLLECTION_PREFIX + key, zlib.compress(data, 1))


async def get_collection(js: JetStreamContext, key: str) -> bytes | None:
    try:
        return zlib.decompress(await get_object(js, PACKS_BUCKET, COLLECTION_PREFIX + key))
    except (ObjectMissing, zlib.error):
        return None


class PlanCache:
    """The plans a worker has read, newest last: every chunk of a run reads the same one."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.plans: dict[str, RunPlan] = {}

    async def chunk(self, js: JetStreamContext, name: str, index: int,
                    wait: float = 0.0) -> tuple[list[str], str]:
        """Chunk ``index`` of plan ``name`` and the plan's collection digest, waiting up to
        ``wait`` seconds for the plan (the submitter writes it once it has collected)."""
        plan = self.plans.pop(name, None)
        if plan is None:
            plan = decode_plan(name, await _wait_for_plan(js, name, wait))
        self.plans[name] = plan
        while len(self.plans) > self.size:
            self.plans.pop(next(iter(self.plans)))
        if not 0 <= index < len(plan.chunks):
            raise DTFError(f"the run plan {name} has no chunk {index}")
        return plan.chunks[index], plan.collection


async def _wait_for_plan(js: JetStreamContext, name: str, wait: float) -> bytes:
    clock = asyncio.get_running_loop().time
    start = clock()
    while True:
        try:
            return await get_object(js, PACKS_BUCKET, PLAN_PREFIX + name)
        except ObjectMissing:
            if clock() - start >= wait:
                raise DTFError(f"the run plan {name} is not in the object store (the run's "
                               f"client stopped before it collected the tests?)") from None
        fast = clock() - start < PLAN_POLL_FAST_FOR_S
        await asyncio.sleep(PLAN_POLL_S if fast else PLAN_POLL_SLOW_S)
