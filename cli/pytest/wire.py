"""What the client and the workers' sessions exchange: the arguments and settings a
session runs pytest with (as it ran here), each test's requirements, and the reports and
warnings that come back."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dtf_core.spec import Requirements

log = logging.getLogger(__name__)

# DTF's own options: everything else on the command line goes to the workers' sessions as
# given, so that they collect and run the tests as plain pytest would here.
DTF_FLAGS = {"--dtf", "--allow-unmatched", "--dtf-ci"}
DTF_VALUES = {"--dtf-server", "--dtf-token-file", "--dtf-reruns", "--dtf-pack", "--dtf-timeout",
              "--dtf-chunk-timeout", "--dtf-run-name", "--dtf-json", "--dtf-md", "--dtf-html",
              "--dtf-dist",
              # pytest's own options that act only where the run is reported (here): a
              # worker's session ignores them (it has `workerinput`), so leaving them out
              # keeps one session for runs that differ only in where the JUnit file goes
              "--junit-xml", "--junitxml", "--junit-prefix", "--junitprefix", "--durations",
              "--durations-min"}
# Whether the directory pytest started in was first on sys.path (`python -m pytest`), as
# it was when this module was imported (before any conftest changed sys.path).
_PATH0 = bool(sys.path) and sys.path[0] in ("", os.getcwd())
def path_requirements(config: pytest.Config) -> list[tuple[str, Requirements]]:
    """``[tool.dtf.ci.requirements]`` in the root's pyproject.toml: a path prefix (relative
    to the root) -> requirements, for tests without a marker; the longest prefix wins."""
    from cli.ci.main import ci_config

    table = ci_config(Path(config.rootpath)).get("requirements", {})
    out = []
    for prefix, req in (table.items() if isinstance(table, dict) else ()):
        try:
            out.append((str(prefix), msgspec.convert(req, Requirements)))
        except msgspec.ValidationError as exc:
            raise pytest.UsageError(f"[tool.dtf.ci.requirements] {prefix!r}: {exc}") from None
    return sorted(out, key=lambda kv: -len(kv[0]))


def requirements_of(item: pytest.Item,
                    by_path: list[tuple[str, Requirements]] | None = None) -> Requirements:
    marker = item.get_closest_marker("dtf")
    if marker is None:
        for prefix, req in by_path or ():
            if item.nodeid.startswith(prefix):
                return req
        return Requirements()
    try:
        return msgspec.convert(dict(marker.kwargs), Requirements)
    except msgspec.ValidationError as exc:
        raise pytest.UsageError(f"{item.nodeid}: bad @pytest.mark.dtf(...): {exc}") from None


def worker_args(args: Iterable[str]) -> tuple[str, ...]:
    """This invocation's arguments without DTF's own options: the workers' sessions run
    pytest with them, as pytest-xdist's workers get the controller's."""
    out: list[str] = []
    it = iter(args)
    for arg in it:
        name, eq, _ = arg.partition("=")
        if name in DTF_FLAGS:
            continue
        if name in DTF_VALUES:
            if not eq:
                next(it, None)
            continue
        out.append(arg)
    return tuple(out)


def session_template(config: pytest.Config, root: Path) -> dict[str, Any]:
    """How every chunk's session runs pytest: as it was run here."""
    env = {name: os.environ[name] for name in
           ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH",
            "PYTHONHASHSEED")
           if name in os.environ}
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    tw = getattr(reporter, "_tw", None)
    width = int(getattr(tw, "fullwidth", 0) or shutil.get_terminal_size().columns)
    return {"args": list(worker_args(str(a) for a in config.invocation_params.args)),
            "invocation_dir": str(Path(config.invocation_params.dir).resolve()),
            "rootdir": str(root), "host": local_host(), "env": env, "path0": _PATH0,
            "markup": bool(getattr(tw, "hasmarkup", False)),
            "highlight": bool(getattr(tw, "code_highlight", False)),
            "width": max(10, min(width, 10_000))}

def unpack_reports(data: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
    """A test's serialised reports, from the session's packed form (what they share once,
    then what each phase adds) or the plain list."""
    if isinstance(data, list):
        return data
    common = data.get("c") or {}
    return [{**common, **phase} for phase in data.get("p") or ()]


def unserialize_warning(data: dict[str, Any]) -> warnings.WarningMessage:
    """A warning a worker's test raised, rebuilt as pytest-xdist rebuilds it."""
    message: Any = data.get("message_str", "")
    category: Any = None
    try:  # the user's modules, imported by name: whatever their import raises
        if data.get("message_module"):
            cls = getattr(importlib.import_module(data["message_module"]), data["message_class"])
            try:
                message = cls(*data["message_args"]) if "message_args" in data else None
            except TypeError:
                message = None
            if message is None:
                message = Warning(f"{data['message_module']}.{data['message_class']}: "
                                  f"{data.get('message_str', '')}")
    except Exception as exc:  # a user module: any error; the message is shown as sent
        log.debug("warning class %s not rebuilt: %r", data.get("message_class"), exc)
    try:
        if data.get("category_module"):
            category = getattr(importlib.import_module(data["category_module"]),
                               data["category_class"])
    except Exception as exc:  # a user module: any error; UserWarning (or the class) then
        log.debug("warning category %s not rebuilt: %r", data.get("category_class"), exc)
    if category is None:
        category = type(message) if isinstance(message, Warning) else UserWarning
    return warnings.WarningMessage(message=message, category=category,
                                   filename=str(data.get("filename", "")),
                                   lineno=int(data.get("lineno") or 0))


def local_host() -> str:
    return socket.gethostname()
