"""`dtf bench`: submit a benchmark task from the command line (the same task as a
``{"type": "benchmark", ...}`` JSON). Exclusive unless ``--shared``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.host import loop as agent_loop
from cli import client_cmds as cc
from cli import render
from cli.client_cmds import Target
from cli.results_cmds import Client
from cli.workdirs import in_submitters_dir
from dtf_core.errors import InvalidInput
from dtf_core.spec import WORKLOADS, parse_specs


def add_parser(client: Client) -> None:
    b = client("bench", "submit a benchmark: a built-in workload, --callable or -- CMD...")
    b.add_argument("--workload", choices=WORKLOADS, default=None,
                   help="a built-in (default: torch-matmul with --gpus and torch, else "
                        "numpy-matmul)")
    b.add_argument("--callable", default=None, metavar="PKG.MOD:FN",
                   help="called with (batch_size, precision) per iteration, in this directory")
    b.add_argument("--model", default="", help="a label to group and filter results by")
    b.add_argument("--batch-sizes", default="1", metavar="N,N,...")
    b.add_argument("--precision", default="fp32",
                   choices=["fp16", "bf16", "fp32", "fp64", "int8"])
    b.add_argument("--iterations", type=int, default=10)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--shared", action="store_true",
                   help="let other tasks run on the worker meanwhile (default: it has the "
                        "worker to itself)")
    b.add_argument("--name", default="")
    b.add_argument("--priority", type=int, default=None)
    b.add_argument("--timeout", type=float, default=None, help="seconds")
    b.add_argument("--requires", action="append", default=[], metavar="HARDWARE")
    b.add_argument("--gpus", type=int, default=None)
    b.add_argument("--group", default=None)
    b.add_argument("--cwd", default=None)
    b.add_argument("--pack", choices=["auto", "always", "never"], default="auto")


def spec_json(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    try:
        sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    except ValueError:
        raise InvalidInput(f"--batch-sizes {args.batch_sizes!r}: give numbers, "
                           "e.g. 1,8,32") from None
    config: dict[str, Any] = {"batch_sizes": sizes, "precision": args.precision,
                              "iterations": args.iterations, "warmup": args.warmup}
    for key, value in (("model", args.model), ("workload", args.workload),
                       ("callable", args.callable), ("command", argv or None),
                       ("shared", args.shared or None)):
        if value:
            config[key] = value
    spec: dict[str, Any] = {"type": "benchmark", "config": config}
    if args.name:
        spec["name"] = args.name
    if args.priority is not None:
        spec["priority"] = args.priority
    if args.timeout is not None:
        spec["timeout_seconds"] = args.timeout
    wanted = {"hardware": args.requires, "gpus": args.gpus, "worker_group": args.group}
    req = {k: v for k, v in wanted.items() if v not in (None, [])}
    if req:
        spec["requirements"] = req
    return spec


def bench_cmd(args: argparse.Namespace, target: Target, argv: list[str] | None) -> int:
    [spec] = parse_specs(json.dumps(spec_json(args, argv)))
    spec = in_submitters_dir(spec, args.cwd)
    res = agent_loop.run(cc.submit(target, [spec], pack=args.pack))
    if args.json:
        render.emit_json({"id": res.ids[0]})
    else:
        render.out(render.submitted(res.ids))
    return 0
