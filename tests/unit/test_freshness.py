"""A fork server is reused only while what its collection read is unchanged."""

import os
import sys
from pathlib import Path

from agents.worker.pytest.freshness import Recorder, changed, collection_digest


def record(fn) -> list:  # type: ignore[no-untyped-def,type-arg]
    recorder = Recorder()
    sys.addaudithook(recorder)  # cannot be removed: snapshot() turns it off
    try:
        fn()
    finally:
        deps = recorder.snapshot()
    return deps


def test_a_changed_source_or_a_new_module_is_seen(tmp_path: Path) -> None:
    source = tmp_path / "pkg.py"
    source.write_text("X = 1\n")
    deps = record(lambda: (source.read_text(), os.listdir(tmp_path)))
    assert changed(deps) is None
    (tmp_path / "test.edgelist").write_text("a test wrote this")  # not importable: ignored
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".pytest_cache").mkdir()
    # pytest 8 makes its cache as a temporary directory and renames it: a client's run on
    # this host may have one in the root for a moment (this made warm sessions stale)
    (tmp_path / "pytest-cache-files-i0_6mtzv").mkdir()
    assert changed(deps) is None
    (tmp_path / "newmod.py").write_text("")  # importable now: a listed directory changed
    assert changed(deps) == str(tmp_path)
    (tmp_path / "newmod.py").unlink()
    source.write_text("X = 22\n")  # a source it read
    assert changed(deps) == str(source)


def test_writes_are_not_dependencies(tmp_path: Path) -> None:
    out = tmp_path / "log.txt"
    deps = record(lambda: out.write_text("written while collecting"))
    out.write_text("and again")
    assert changed(deps) is None and not any(d[1] == str(out) for d in deps)


def test_the_collection_digest_ignores_order() -> None:
    assert collection_digest(["b", "a"]) == collection_digest(["a", "b"])
    assert collection_digest(["a"]) != collection_digest(["a", "a"])


def test_a_directory_opened_as_a_file_counts_by_its_names(tmp_path: Path) -> None:
    """Code that opens a directory (to list or sync it) must not tie the session to the
    directory's mtime: a cache made there (`.pytest_cache`, by the run's own client) would
    make a warm session stale. A new module there still does."""
    deps = record(lambda: os.close(os.open(tmp_path, os.O_RDONLY)))
    (tmp_path / ".pytest_cache").mkdir()
    assert changed(deps) is None
    (tmp_path / "newmod.py").write_text("")
    assert changed(deps) == str(tmp_path)
