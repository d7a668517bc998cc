import io
import tarfile
from pathlib import Path

import pytest

from agents.worker.packs import _install, make_pack, tree_digest, tree_files, unpack
from dtf_core.errors import DTFError, InvalidInput


def tar_with(name: str, kind: bytes = tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


def make_tree(root: Path) -> list[str]:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    return tree_files(root)


def test_a_pack_round_trips_and_is_content_addressed(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    assert files == ["pkg/a.py", "run.sh"]  # caches are not packed
    digest = tree_digest(tmp_path / "src", files)
    data = make_pack(tmp_path / "src", files)
    assert make_pack(tmp_path / "src", files) == data  # deterministic
    dest = _install(data, digest, tmp_path / "cache")
    assert (dest / "pkg" / "a.py").read_text() == "A = 1\n"
    (tmp_path / "src" / "pkg" / "a.py").write_text("A = 2\n")
    assert tree_digest(tmp_path / "src", files) != digest  # an edit is a new pack
    with pytest.raises(DTFError, match="does not match its digest"):
        _install(data, "0" * 64, tmp_path / "cache")


@pytest.mark.parametrize("name", ["../escape.py", "/abs.py", "a/../../b.py", "~/x"])
def test_unpack_refuses_paths_outside_the_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="relative path inside the root"):
        unpack(tar_with(name), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unpack_refuses_links(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a regular file"):
        unpack(tar_with("link", tarfile.SYMTYPE), tmp_path)


def test_dtfs_own_files_are_never_packed_even_in_git(tmp_path: Path) -> None:
    import subprocess

    root = tmp_path / "proj"
    make_tree(root)
    (root / ".dtf" / "nats").mkdir(parents=True)
    (root / ".dtf" / "nats" / "store.blk").write_bytes(b"changes every run")
    (root / "dtf-reports").mkdir()
    (root / "dtf-reports" / "junit.xml").write_text("<x/>")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert tree_files(root) == ["pkg/a.py", "run.sh"]
