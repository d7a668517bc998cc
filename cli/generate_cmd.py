"""`dtf generate`: a model's hardware x precision x batch-size plan from templates, printed
(`--json`: the task specs) or submitted as one run (`--submit`); `dtf templates`: add a
template version, list them, map a model name to its family."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec

from agents.host import loop as agent_loop
from cli import client_cmds as cc
from cli import render
from cli.client_cmds import Target
from cli.results_cmds import Client
from cli.template_store import DEFAULT, TemplateStore
from cli.workdirs import in_submitters_dir
from dtf_core.errors import InvalidInput
from dtf_core.generate import FAMILIES, PRECISIONS, detect_family, plan


def add_parsers(client: Client) -> None:
    g = client("generate", "plan (and --submit) a model's benchmark and test tasks across "
                           "hardware, precisions and batch sizes, from templates")
    g.add_argument("--model", required=True, help="a model name, e.g. bert-base-uncased")
    g.add_argument("--hardware", default="cpu", metavar="HW,HW,...", help="default cpu")
    g.add_argument("--batch-sizes", default="1", metavar="N,N,...")
    g.add_argument("--precision", default="fp32", metavar="P,P,...",
                   help=f"any of {', '.join(PRECISIONS)} (default fp32)")
    g.add_argument("--family", choices=FAMILIES, default=None,
                   help="the model's family, where its name or config does not tell")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="the model's config.json (model_type, architectures) to tell its family")
    g.add_argument("--templates", default=DEFAULT, metavar="FILE",
                   help=f"the template database (default ./{DEFAULT}; none: built-ins)")
    g.add_argument("--submit", action="store_true", help="submit the plan as one run")
    t = client("templates", "the templates `dtf generate` uses: add FILE, list, map MODEL FAMILY")
    t.add_argument("action", choices=["add", "list", "map"])
    t.add_argument("args", nargs="*", help="add: a task-spec JSON file; map: MODEL FAMILY")
    t.add_argument("--id", dest="template_id", default=None, help="add: the template's id "
                   "(default: the file's name); adding it again makes a new version")
    t.add_argument("--family", default="*", help="add: the family it is for (default: any)")
    t.add_argument("--for-hardware", dest="for_hardware", default="*",
                   help="add: the hardware type it is for (default: any)")
    t.add_argument("--kind", choices=["benchmark", "test"], default="benchmark")
    t.add_argument("--templates", default=DEFAULT, metavar="FILE")


def _list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise InvalidInput(f"--{what} needs at least one value")
    return items


def generate_cmd(args: argparse.Namespace, target: Target) -> int:
    store = TemplateStore(args.templates)
    config = None
    if args.config:
        try:
            config = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"--config {args.config}: {exc}") from None
    family, why = (args.family, "--family") if args.family else detect_family(
        args.model, config, store.mapping())
    try:
        sizes = [int(x) for x in _list(args.batch_sizes, "batch-sizes")]
    except ValueError:
        raise InvalidInput(f"--batch-sizes {args.batch_sizes!r}: numbers, e.g. 1,8,32"
                           ) from None
    planned = plan(args.model, family, hardware=_list(args.hardware, "hardware"),
                   batch_sizes=sizes, precisions=_list(args.precision, "precision"),
                   templates=store.templates(), prefix="g" + uuid.uuid4().hex[:10])
    if args.submit:
        specs = [in_submitters_dir(p.spec, None) for p in planned]
        res = agent_loop.run(cc.submit(target, specs, run_name=f"generate {args.model}"))
        if args.json:
            render.emit_json({"run_id": res.run_id, "ids": res.ids, "family": family})
        else:
            render.out(f"{args.model}: {family} ({why}); submitted as run {res.run_id}\n"
                       + render.submitted(res.ids))
        return 0
    if args.json:
        render.emit_json([msgspec.to_builtins(p.spec) for p in planned])
        return 0
    render.out(f"{args.model}: {family} ({why}); {len(planned)} tasks")
    render.table([(p.task_id, p.kind, p.hardware, p.precision or "", p.batch_size or "",
                   p.memory_gb, ",".join(p.depends_on), p.template) for p in planned],
                 ["task", "kind", "hardware", "precision", "batch", "memory_gb", "after",
                  "template"])
    return 0


def templates_cmd(args: argparse.Namespace) -> int:
    store = TemplateStore(args.templates)
    if args.action == "add":
        if len(args.args) != 1:
            raise InvalidInput("dtf templates add FILE: one task-spec JSON file")
        path = Path(args.args[0])
        try:
            content = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"{path}: {exc}") from None
        added = store.add(args.template_id or path.stem, family=args.family,
                          hardware=args.for_hardware, kind=args.kind, content=content)
        render.out(f"template {added.template_id} version {added.version} stored in "
                   f"{store.path}")
        return 0
    if args.action == "map":
        if len(args.args) != 2:
            raise InvalidInput("dtf templates map MODEL FAMILY")
        store.map_model(args.args[0], args.args[1])
        render.out(f"{args.args[0]} is {args.args[1]} in {store.path}")
        return 0
    rows: list[Any] = [(t.template_id, t.version, t.family, t.hardware, t.kind)
                       for t in store.templates()]
    if args.json:
        render.emit_json([dict(zip(("id", "version", "family", "hardware", "kind"), r,
                                   strict=True)) for r in rows])
    else:
        render.table(rows, ["id", "version", "family", "hardware", "kind"])
    return 0
