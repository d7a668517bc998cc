"""`dtf`: the command line. Thin: parse, load settings, call, render."""

from __future__ import annotations

import argparse
import logging
import sys

from agents.host import settings as settings_mod
from agents.proc.signals import default_broken_pipe
from cli import client_cmds as cc
from cli import hosting
from cli.args import parser
from cli.commands import COMMANDS, Ctx
from dtf_core.errors import DTFError, InvalidInput, NotFound
from dtf_core.events.task import TERMINAL_TYPES

HOSTING = {"up": hosting.up, "agent": hosting.agent, "worker": hosting.worker}


def _no_tls_eof_warning(record: logging.LogRecord) -> bool:
    """asyncio warns on every TLS connection nats-py closes ("returning true from
    eof_received() has no effect when using ssl"): noise, not the user's concern."""
    return "eof_received()" not in record.getMessage()


def _run(args: argparse.Namespace, argv_after: list[str] | None) -> int:
    cfg = settings_mod.load(server=args.server)
    target = cc.Target(cfg.server, settings_mod.credential(cfg, args.token_file),
                       settings_mod.tls_ca(cfg))
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncio").addFilter(_no_tls_eof_warning)
    ctx = Ctx(target, argv_after)
    if args.cmd in HOSTING:
        return HOSTING[args.cmd](args, ctx, cfg)
    logging.getLogger().setLevel(logging.WARNING)
    command = COMMANDS.get(args.cmd)
    if command is None:
        return 2
    return command(args, ctx)


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:2] == ["run", "pytest"]:
        from cli.pytest.run import run_pytest

        return run_pytest(raw[2:])
    if raw[:1] == ["run"]:  # `dtf run`, `dtf run --help`, `dtf run <not pytest>`
        print("usage: dtf run pytest [pytest args]   (runs pytest's own command line on the "
              "DTF workers; see `dtf run pytest --help`)", file=sys.stderr)
        return 0 if raw[1:2] in (["--help"], ["-h"]) else 2
    if raw[:1] == ["worker"] and raw[1:2] in (["cordon"], ["drain"], ["uncordon"]):
        raw = ["worker-manage", *raw[1:]]
    if raw[:1] == ["ci"]:
        from cli.ci.main import run_ci

        return run_ci(raw[1:])
    after: list[str] | None = None
    if "--" in raw:
        cut = raw.index("--")
        raw, after = raw[:cut], raw[cut + 1 :]
    argparser = parser()
    args = argparser.parse_args(raw)
    if args.cmd not in ("up", "worker", "agent"):
        default_broken_pipe()  # `dtf tasks | head` ends quietly
    try:
        return _run(args, after)
    except DTFError as exc:
        sys.stderr.write(f"dtf: error: {exc}\n")
        return 2 if isinstance(exc, InvalidInput | NotFound) else 1
    except TimeoutError:
        sys.stderr.write("dtf: error: timed out\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["TERMINAL_TYPES", "main"]
