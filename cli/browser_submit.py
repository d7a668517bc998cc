"""`dtf submit --browser PAGE` and `--browser-module FILE`: a browser task's spec."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any

import msgspec

from cli.workdirs import in_submitters_dir
from dtf_core.browser_shards import shard_run
from dtf_core.browser_spec import is_url
from dtf_core.errors import InvalidInput
from dtf_core.spec import TaskSpec, validate_spec

BROWSER_FLAGS = ("browser", "browser_module", "shards", "merge_page", "merge_module")


def add_browser_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--browser", default=None, metavar="PAGE",
                   help="a browser task: the test page PAGE (a path in the directory, or an "
                        "http(s) URL) in a fresh context of a worker's headless Chromium")
    s.add_argument("--browser-module", default=None, metavar="FILE",
                   help="a browser task: the JavaScript module FILE; its default export is "
                        "called (see docs/browser.md)")
    s.add_argument("--shards", type=int, default=None, metavar="N",
                   help="with --browser/--browser-module: N tasks, each given its part "
                        "(params shard, shards), submitted as one run")
    s.add_argument("--merge-page", default=None, metavar="PAGE",
                   help="with --shards: a page run when every shard succeeded")
    s.add_argument("--merge-module", default=None, metavar="FILE",
                   help="with --shards: a module run when every shard succeeded")


def browser_specs(args: argparse.Namespace, argv: list[str] | None,
                  fields: dict[str, Any]) -> list[TaskSpec]:
    """One browser task, or with ``--shards N`` N of them and a merge task, as one run."""
    if args.browser is None and args.browser_module is None:
        raise InvalidInput("--shards, --merge-page and --merge-module go with --browser "
                           "or --browser-module")
    merging = args.merge_page is not None or args.merge_module is not None
    if args.shards is None:
        if merging:
            raise InvalidInput("--merge-page and --merge-module go with --shards N")
        return [browser_spec(args, argv, fields)]
    shard = browser_spec(args, argv, {k: v for k, v in fields.items()
                                      if k != "idempotency_key"})
    merge = None
    if merging:
        merge = browser_spec(argparse.Namespace(**{
            **vars(args), "browser": args.merge_page, "browser_module": args.merge_module}),
            None, {k: v for k, v in fields.items() if k not in ("dependencies",
                                                               "idempotency_key")})
    return shard_run(shard, args.shards, "bs-" + uuid.uuid4().hex[:16], merge)


def browser_spec(args: argparse.Namespace, argv: list[str] | None,
                 fields: dict[str, Any]) -> TaskSpec:
    """``--browser PAGE`` or ``--browser-module FILE``: a path is taken relative to the
    directory (``--cwd``, else here), whose files the page may load."""
    if argv is not None or args.file is not None:
        raise InvalidInput("--browser and --browser-module take no task JSON or command")
    if args.browser is not None and args.browser_module is not None:
        raise InvalidInput("give --browser or --browser-module, not both")
    if args.env or args.secret_env:
        raise InvalidInput("a browser task takes no --env or --secret-env")
    key, value = ("page", args.browser) if args.browser is not None else \
        ("module", args.browser_module)
    if not is_url(value) and Path(value).is_absolute():
        base = Path(args.cwd or ".").resolve()
        try:
            value = str(Path(value).resolve().relative_to(base))
        except ValueError:
            raise InvalidInput(f"{value} is outside {base}: give a path inside the "
                               "directory (or --cwd DIR)") from None
    try:
        spec = msgspec.convert({"type": "browser", "config": {key: value}, **fields},
                               TaskSpec)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid task: {exc}") from None
    return in_submitters_dir(validate_spec(spec), args.cwd)
