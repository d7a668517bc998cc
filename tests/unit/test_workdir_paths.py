"""A packed pytest run's paths, moved from the submitter's root into the worker's working
copy, whichever OS submitted it (agents/worker/workdir.py)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from agents.worker.packs import _skipped
from agents.worker.workdir import args_in_copy, submitted_path

COPY = Path("/cache/copies/abc")


def test_the_submitters_os_is_read_from_the_path() -> None:
    assert isinstance(submitted_path("/home/me/proj"), PurePosixPath)
    assert isinstance(submitted_path("C:\\Users\\me\\proj"), PureWindowsPath)
    assert isinstance(submitted_path("c:/Users/me/proj"), PureWindowsPath)
    assert isinstance(submitted_path("\\\\server\\share\\proj"), PureWindowsPath)
    assert isinstance(submitted_path("relative/dir"), PurePosixPath)


def test_posix_arguments_move_into_the_copy() -> None:
    root = submitted_path("/home/me/proj/")
    args = ("/home/me/proj/tests/test_a.py::test_x[a/b]", "-k", "not slow",
            "/home/me/proj", "/elsewhere/conftest.py", "tests/", "/home/me/project2/t.py")
    assert args_in_copy(args, root, COPY) == (
        "/cache/copies/abc/tests/test_a.py::test_x[a/b]", "-k", "not slow",
        "/cache/copies/abc", "/elsewhere/conftest.py", "tests/", "/home/me/project2/t.py")


def test_windows_arguments_move_into_the_copy() -> None:
    root = submitted_path("C:\\Users\\me\\proj")
    args = ("C:\\Users\\me\\proj\\tests\\test_a.py::test_x[a\\b]", "c:\\users\\ME\\proj\\t.py",
            "-x", "D:\\proj\\t.py")
    assert args_in_copy(args, root, COPY) == (
        "/cache/copies/abc/tests/test_a.py::test_x[a\\b]",
        "/cache/copies/abc/t.py",  # Windows paths ignore case
        "-x", "D:\\proj\\t.py")


def test_pack_paths_skip_cache_directories_at_any_depth() -> None:
    assert _skipped("pkg/__pycache__/m.cpython-311.pyc")
    assert _skipped(".git/config")
    assert not _skipped("pkg/module.py")
    assert not _skipped("__pycache__")  # a file of that name is not a directory
