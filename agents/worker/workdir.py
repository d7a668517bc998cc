"""Where a task runs on this worker: the submitter's directory on its own host; on another
host (or where that directory is gone), a working copy of the verified pack of its tree."""

from __future__ import annotations

import re
import socket
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

import msgspec
from nats.js.client import JetStreamContext

from agents.worker.packs import working_copy
from agents.worker.pytest.server import SessionSpec
from dtf_core.errors import DTFError
from dtf_core.spec import CommandConfig, TestConfig


async def command_dir(js: JetStreamContext, cache_dir: Path, cfg: CommandConfig, *,
                      always_unpack: bool = False) -> CommandConfig:
    """A command runs in the submitter's directory on its own host; elsewhere (or where
    that directory is gone) in a working copy of its pack, when it was packed."""
    host = cfg.host or socket.gethostname()  # a spec from before hosts were recorded
    if cfg.code is None or (cfg.cwd and _on_this_host(host, Path(cfg.cwd), always_unpack)):
        return cfg
    copy = await working_copy(js, cfg.code, cache_dir)
    return msgspec.structs.replace(cfg, cwd=str(copy))

async def session_spec(js: JetStreamContext, cache_dir: Path, cfg: TestConfig, *,
                       always_unpack: bool = False) -> SessionSpec:
    """Where and how the chunk's pytest session runs: in the submitter's directory on
    its own host, else in the same directory of a working copy of the verified pack."""
    local = Path(cfg.rootdir)
    invocation = Path(cfg.invocation_dir or cfg.rootdir)
    env = dict(cfg.env)
    if cfg.rootdir and _on_this_host(cfg.host, local, always_unpack):
        cwd, args = invocation, cfg.args
        env.setdefault("PYTHONPATH", "")  # the submitter's, or none, as it ran
    else:
        if not cfg.packed or cfg.code is None:
            raise DTFError(f"the code is on {cfg.host or 'another host'} and was not "
                           "packed; run with --dtf-pack to send it to workers on other "
                           "hosts")
        root = submitted_path(cfg.rootdir)
        try:
            rel = submitted_path(cfg.invocation_dir or cfg.rootdir).relative_to(root)
        except ValueError:
            raise DTFError(f"pytest ran in {invocation}, outside its root {local}: a "
                           "packed run starts inside its root") from None
        copy = await working_copy(js, cfg.code, cache_dir)
        cwd = copy.joinpath(*rel.parts)
        args = args_in_copy(cfg.args, root, copy)
        env.pop("PYTHONPATH", None)  # paths on another host: the worker's own applies
    return SessionSpec(cwd=str(cwd), args=tuple(args), env=tuple(sorted(env.items())),
                       path0=cfg.path0, markup=cfg.markup, highlight=cfg.highlight,
                       width=cfg.width)


_WINDOWS_PATH = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")  # C:\ or C:/, or \\server


def submitted_path(path: str) -> PurePath:
    """A path as its submitter's OS reads it (it may not be this worker's): Windows' for
    a drive or UNC path, else POSIX's."""
    return PureWindowsPath(path) if _WINDOWS_PATH.match(path) else PurePosixPath(path)


def args_in_copy(args: tuple[str, ...], root: PurePath, copy: Path) -> tuple[str, ...]:
    """pytest's arguments with the paths inside the submitter's root moved into the
    working copy; the others (options, paths elsewhere) as given. A node id's part after
    ``::`` is kept as written (a parameter may hold a slash)."""
    out = []
    for arg in args:
        path, sep, node = arg.partition("::")
        try:
            rel = type(root)(path).relative_to(root)
        except ValueError:
            out.append(arg)
            continue
        out.append(str(copy.joinpath(*rel.parts)) + sep + node)
    return tuple(out)


def _on_this_host(host: str, path: Path, always_unpack: bool) -> bool:
    """The submitter's directory is here (``always_unpack``: act as another host)."""
    return host == socket.gethostname() and path.is_dir() and not always_unpack
