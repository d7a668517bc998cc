"""`dtf run pytest ARGS...`: pytest's own command line, run on the DTF workers."""

from __future__ import annotations

import gc

import pytest

RENAMED = {"--reruns": "--dtf-reruns", "--server": "--dtf-server", "--timeout-run": "--dtf-timeout",
           "--dist": "--dtf-dist", "--token-file": "--dtf-token-file"}


def translate(args: list[str]) -> list[str]:
    """DTF's short spellings of its pytest options (``--reruns 2`` is ``--dtf-reruns 2``)."""
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        out.append(RENAMED[name] + eq + value if name in RENAMED else arg)
    return out


def run_pytest(args: list[str]) -> int:
    """Run pytest with DTF; the process is expected to end right after (the CLI's path)."""
    code = int(pytest.main(["--dtf", *translate(args)]))
    gc.freeze()  # exit without a last full collection over every report and item
    return code
