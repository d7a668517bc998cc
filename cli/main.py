"""`dtf`: the command line. Thin: parse, load settings, call, render."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from agents import settings as settings_mod
from cli import client_cmds as cc
from cli import render
from dtf_core.errors import DTFError, InvalidInput, NotFound
from dtf_core.events.task import TERMINAL_TYPES
from dtf_core.spec import TaskSpec, command_spec, parse_specs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtf", description="DTF: distributed testing framework")
    sub = p.add_subparsers(dest="cmd", required=True)

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--server", help=f"NATS URL (env DTF_SERVER, default "
                        f"{settings_mod.DEFAULT_SERVER})")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("--token-file", default=None,
                        help="credential file (env DTF_TOKEN / DTF_TOKEN_FILE; default: the "
                             "local admin credential in ./.dtf)")
        return sp

    up = client("up", "start nats-server, the agents and local workers")
    up.add_argument("--data-dir", default=None, help="state directory (default ./.dtf)")
    up.add_argument("--port", type=int, default=4222)
    up.add_argument("--workers", type=int, default=1)
    up.add_argument("--slots", type=int, default=None, help="tasks per worker (default: cores)")
    up.add_argument("--insecure-dev", action="store_true",
                    help="no authentication (loopback development only)")
    up.add_argument("--tls", action="store_true",
                    help="TLS for every connection, with a local CA made once in the data dir")
    up.add_argument("--host", default="127.0.0.1",
                    help="address NATS listens on (default 127.0.0.1; others need auth)")

    w = client("worker", "run a worker daemon on this host")
    w.add_argument("--id", dest="worker_id", default=None)
    w.add_argument("--slots", type=int, default=None)
    w.add_argument("--tags", default="", help="comma-separated free-form capabilities")
    w.add_argument("--group", default="", help="the named pool this worker serves")

    wm = client("worker-manage", "cordon, drain or uncordon a worker (`dtf worker drain W`)")
    wm.add_argument("action", choices=["cordon", "drain", "uncordon"])
    wm.add_argument("id")
    wm.add_argument("--reason", default="")

    au = client("audit", "a task's, worker's or run's history with actors; or `verify`: "
                "check the invariants over the whole log")
    au.add_argument("kind", choices=["task", "worker", "run", "verify"])
    au.add_argument("id", nargs="?")

    rp = client("replay", "the folded state as of a sequence or a time")
    rp.add_argument("--at", required=True, metavar="SEQ|TIME")

    sim = client("simulate", "replay the recorded submissions and workers under a policy")
    sim.add_argument("--policy", default="default", help="default, fifo, or a plug-in's name")
    sim.add_argument("--from", dest="from_seq", type=int, default=1, metavar="SEQ")

    ex = client("explain", "why a task waits, or why it went where it went")
    ex.add_argument("id")

    a = client("agent", "run one agent daemon")
    a.add_argument("kind", choices=["api", "scheduler", "recovery", "projector", "control"],
                   help="control = api + scheduler + recovery sharing one fold")
    a.add_argument("--db", default=None, help="projector: DuckDB file")
    a.add_argument("--keys", default=None, help="api/control: signing key dir (to issue tokens)")
    a.add_argument("--insecure-dev", action="store_true", help="api/control: no authentication")

    s = client("submit", "submit task JSON (file or -) or a command after --")
    s.add_argument("file", nargs="?", help="task JSON file (one object or a list), or -")
    s.add_argument("--name", default="")
    s.add_argument("--priority", type=int, default=None)
    s.add_argument("--timeout", type=float, default=None, help="seconds")
    s.add_argument("--retries", type=int, default=None)
    s.add_argument("--retry-delay", type=float, default=None)
    s.add_argument("--idempotency-key", default=None)
    s.add_argument("--cwd", default=None)
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--requires", action="append", default=[], metavar="HARDWARE")
    s.add_argument("--min-memory-gb", type=float, default=None)
    s.add_argument("--depends-on", action="append", default=[], metavar="TASK_ID")
    s.add_argument("--run-name", default="")

    wt = client("wait", "wait for tasks; exit 0 if all succeeded, 1 otherwise")
    wt.add_argument("ids", nargs="+")
    wt.add_argument("--timeout", type=float, default=None)

    t = client("tasks", "list tasks")
    t.add_argument("--status", default=None)
    t.add_argument("--run", dest="run_id", default=None)
    t.add_argument("--limit", type=int, default=50)

    one = client("task", "show a task and its event history")
    one.add_argument("id")

    client("workers", "list workers")
    lg = client("logs", "print a task's output")
    lg.add_argument("id")
    lg.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("run", help="run a tool on the workers: `dtf run pytest [pytest args]`",
                   add_help=False)
    sub.add_parser("ci", help="CI: run the suite on DTF, write reports, exit with pytest's "
                   "code (`dtf ci --help`)", add_help=False)
    art = client("artifacts", "list or fetch a run's stored artifacts (reports, logs)")
    art.add_argument("action", choices=["list", "get"])
    art.add_argument("run_id")
    art.add_argument("name", nargs="?")
    art.add_argument("-o", "--output", default=None, help="get: file to write (default: NAME)")
    c = client("cancel", "cancel a task, or every unfinished task of a run (--run)")
    c.add_argument("id", nargs="?")
    c.add_argument("--run", dest="run_id", default=None)
    client("status", "summary of the system")

    tok = client("token", "issue, refresh or revoke tokens")
    tok.add_argument("action", choices=["issue", "refresh", "revoke"])
    tok.add_argument("jti", nargs="?", help="revoke: the token id")
    tok.add_argument("--role", choices=["admin", "manager", "worker", "reader"])
    tok.add_argument("--sub", default=None, help="issue: the subject (default: the role)")
    tok.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    tok.add_argument("--worker-id", default=None, help="issue --role worker: its worker id")
    tok.add_argument("--reason", default="")

    ks = client("keys", "rotate the token signing key, or retire an old one")
    ks.add_argument("action", choices=["rotate", "retire"])
    ks.add_argument("kid", nargs="?", help="retire: the key id")

    wk = client("worker-key", "create or revoke a worker's API key")
    wk.add_argument("action", choices=["create", "revoke"])
    wk.add_argument("id", help="create: the worker id; revoke: the key id")
    wk.add_argument("--reason", default="")
    return p


def parse_ttl(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise InvalidInput(f"invalid --ttl {text!r}: use e.g. 90s, 30m, 1h or 7d") from None


def _specs_from_args(args: argparse.Namespace, argv: list[str] | None) -> list[TaskSpec]:
    fields: dict[str, Any] = {}
    for key, attr in (("priority", "priority"), ("timeout_seconds", "timeout"),
                      ("idempotency_key", "idempotency_key")):
        if getattr(args, attr) is not None:
            fields[key] = getattr(args, attr)
    if args.name:
        fields["name"] = args.name
    if args.retries is not None or args.retry_delay is not None:
        fields["retry_policy"] = {"max_retries": args.retries or 0,
                                  "retry_delay_seconds": args.retry_delay or 0.0}
    if args.requires or args.min_memory_gb is not None:
        fields["requirements"] = {"hardware": args.requires,
                                  "min_memory_gb": args.min_memory_gb or 0.0}
    if args.depends_on:
        fields["dependencies"] = args.depends_on
    if argv is not None:
        if args.file is not None:
            raise InvalidInput("give either a task JSON file or a command after --, not both")
        if not argv:
            raise InvalidInput("no command after --")
        config: dict[str, Any] = {"argv": argv}
        if args.cwd:
            config["cwd"] = args.cwd
        if args.env:
            config["env"] = cc.parse_env(args.env)
        return [_convert_command(config, fields)]
    if args.file is None:
        raise InvalidInput("nothing to submit: give a task JSON file, - for stdin, or -- CMD...")
    data = sys.stdin.buffer.read() if args.file == "-" else _read(args.file)
    specs = parse_specs(data)
    if args.idempotency_key:
        specs = [s if s.idempotency_key else msgspec.structs.replace(
            s, idempotency_key=f"{args.idempotency_key}/{i}") for i, s in enumerate(specs)]
    return specs


def _convert_command(config: dict[str, Any], fields: dict[str, Any]) -> TaskSpec:
    spec = command_spec(list(config["argv"]), **fields)
    if len(config) > 1:
        merged = {**msgspec.to_builtins(spec), "config": config}
        return parse_specs(msgspec.json.encode(merged))[0]
    return spec


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _run(args: argparse.Namespace, argv_after: list[str] | None) -> int:
    cfg = settings_mod.load()
    server = args.server or cfg.server
    target = cc.Target(server, settings_mod.credential(cfg, args.token_file),
                       settings_mod.tls_ca(cfg))
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd not in ("up", "worker", "agent"):
        logging.getLogger().setLevel(logging.WARNING)
    match args.cmd:
        case "up":
            return _up(args, cfg)
        case "agent":
            from agents.launch import run_agent

            cfg = msgspec.structs.replace(cfg, server=server)
            asyncio.run(run_agent(args.kind, cfg, db_path=args.db, keys_dir=args.keys,
                                  insecure=args.insecure_dev))
            return 0
        case "worker":
            from agents.launch import run_worker

            cfg = msgspec.structs.replace(cfg, server=server)
            tags = tuple(t for t in args.tags.split(",") if t)
            asyncio.run(run_worker(cfg, worker_id=args.worker_id, slots=args.slots, tags=tags,
                                   group=args.group,
                                   credential=target.credential))
            return 0
        case "submit":
            specs = _specs_from_args(args, argv_after)
            res = asyncio.run(cc.submit(target, specs, run_name=args.run_name))
            if args.json:
                render.emit_json({"id": res.ids[0]} if len(res.ids) == 1 else
                                 {"ids": res.ids, "run_id": res.run_id})
            else:
                sys.stdout.write("\n".join(res.ids) + "\n")
            return 0
        case "worker-manage":
            res = asyncio.run(cc.call(target, "manage_worker", args.id, args.action,
                                      args.reason))
            if args.json:
                render.emit_json(res)
            else:
                moved = res.get("migrated") or []
                sys.stdout.write(f"{res['worker_id']}: {res['scheduling']}"
                                 + (f"; {len(moved)} queued leases moved off it" if moved
                                    else "") + "\n")
            return 0
        case "audit":
            from cli import audit_cmds

            if args.kind == "verify":
                result = asyncio.run(audit_cmds.audit_verify(target))
                if args.json:
                    render.emit_json(result)
                else:
                    sys.stdout.write(render.audit(result))
                return 0 if result["clean"] else 1
            if args.id is None:
                raise InvalidInput(f"dtf audit {args.kind} needs an id")
            rows = asyncio.run(audit_cmds.history(target, args.kind, args.id))
            if not rows:
                raise NotFound(f"no events for {args.kind} {args.id}")
            if args.json:
                render.emit_json(rows)
            else:
                sys.stdout.write(render.history(rows))
            return 0
        case "replay":
            from cli import audit_cmds

            state = asyncio.run(audit_cmds.replay(target, args.at))
            if args.json:
                render.emit_json(state)
            else:
                sys.stdout.write(render.replayed(state))
            return 0
        case "simulate":
            res = asyncio.run(cc.simulate(target, args.policy, args.from_seq))
            if args.json:
                render.emit_json(res)
            else:
                sys.stdout.write(render.simulation(res))
            return 0
        case "explain":
            res = asyncio.run(cc.call(target, "explain", args.id))
            if args.json:
                render.emit_json(res)
            else:
                sys.stdout.write("\n".join(res["lines"]) + "\n")
            return 0
        case "artifacts":
            return asyncio.run(cc.artifacts(target, args.action, args.run_id, args.name,
                                            args.output, as_json=args.json))
        case "wait":
            final = asyncio.run(cc.wait(target, args.ids, args.timeout))
            ok = all(final[i]["status"] == "succeeded" for i in args.ids)
            if args.json:
                render.emit_json({i: final[i]["status"] for i in args.ids})
            else:
                for i in args.ids:
                    t = final[i]
                    extra = f" ({t['error']})" if t["error"] and t["status"] != "succeeded" else ""
                    sys.stdout.write(f"{i} {t['status']}{extra}\n")
            return 0 if ok else 1
        case "tasks":
            rows = asyncio.run(cc.call(target, "tasks", status=args.status, run_id=args.run_id,
                                       limit=args.limit))
            render.emit_json(rows) if args.json else render.tasks_table(rows)
            return 0
        case "task":
            t = asyncio.run(cc.call(target, "task", args.id))
            render.emit_json(t) if args.json else render.task_detail(t)
            return 0
        case "workers":
            rows = asyncio.run(cc.call(target, "workers"))
            render.emit_json(rows) if args.json else render.workers_table(rows)
            return 0
        case "logs":
            return asyncio.run(cc.logs(target, args.id, args.follow))
        case "cancel" if args.run_id is not None:
            done = asyncio.run(cc.cancel_run(target, args.run_id))
            if args.json:
                render.emit_json({"run_id": args.run_id, "cancelled": done})
            else:
                sys.stdout.write(f"run {args.run_id}: {len(done)} unfinished tasks cancelled\n")
            return 0
        case "cancel":
            if args.id is None:
                raise InvalidInput("give a task id, or --run RUN")
            res = asyncio.run(cc.call(target, "cancel", args.id))
            if args.json:
                render.emit_json(res)
            elif res["status"] == "cancelled":
                sys.stdout.write(f"{res['id']} cancelled\n")
            else:
                sys.stdout.write(f"{res['id']} cancel requested (it was {res['status']}; "
                                 f"its process is being stopped)\n")
            return 0
        case "keys":
            if args.action == "retire" and not args.kid:
                raise InvalidInput("keys retire needs the key id")
            res = asyncio.run(cc.call(target, "rotate_key") if args.action == "rotate"
                              else cc.call(target, "retire_key", args.kid))
            render.emit_json(res) if args.json else sys.stdout.write(json.dumps(res) + "\n")
            return 0
        case "token" | "worker-key":
            res = asyncio.run(_auth_command(args, target))
            if args.json:
                render.emit_json(res)
            else:
                secret = res.get("token") or res.get("key")
                sys.stdout.write((secret or json.dumps(res)) + "\n")
                if secret:  # the secret alone on stdout, for scripts; the rest for people
                    about = {k: v for k, v in res.items() if k not in ("token", "key")}
                    sys.stderr.write(" ".join(f"{k}={v}" for k, v in about.items()) + "\n")
            return 0
        case "status":
            st = asyncio.run(cc.status(target))
            if args.json:
                render.emit_json(st)
            else:
                counts = ", ".join(f"{k} {v}" for k, v in sorted(st["tasks"].items())) or "none"
                proj = st["projector"]
                projected = (f"{proj['last_seq']}" if "last_seq" in proj
                             else f"unavailable ({proj.get('error', '?')})")
                sys.stdout.write(f"tasks: {counts}\nworkers alive: {st['workers_alive']}\n"
                                 f"log position: {st['last_seq']}\nprojected to: {projected}\n")
            return 0
    return 2


async def _auth_command(args: argparse.Namespace, target: cc.Target) -> Any:
    if args.cmd == "worker-key":
        if args.action == "create":
            return await cc.call(target, "create_api_key", args.id)
        return await cc.call(target, "revoke_api_key", args.id, args.reason)
    if args.action == "issue":
        if args.role is None:
            raise InvalidInput("token issue needs --role")
        return await cc.call(target, "issue_token", args.sub or args.worker_id or args.role,
                             args.role, parse_ttl(args.ttl), args.worker_id)
    if args.action == "refresh":
        return await cc.call(target, "refresh_token", parse_ttl(args.ttl))
    if not args.jti:
        raise InvalidInput("token revoke needs the token id (jti)")
    return await cc.call(target, "revoke_token", args.jti, args.reason)


def _up(args: argparse.Namespace, cfg: settings_mod.Settings) -> int:
    from agents.launch import run_until_signal
    from agents.supervisor import Stack, up

    if args.workers < 0 or (args.slots is not None and args.slots < 1):
        raise InvalidInput("--workers must be >= 0 and --slots >= 1")
    if args.insecure_dev and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise InvalidInput("--insecure-dev listens on loopback only; drop --host")
    stack = Stack(data_dir=Path(args.data_dir or cfg.data_dir).resolve(), port=args.port,
                  workers=args.workers, slots=args.slots, insecure=args.insecure_dev,
                  host=args.host, tls=args.tls)

    def ready(s: Stack) -> None:
        sys.stdout.write(f"DTF ready at {s.url}\n")
        sys.stdout.flush()

    asyncio.run(run_until_signal(lambda: up(stack, ready)))
    return 0


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:2] == ["run", "pytest"]:
        from cli.pytest.run import run_pytest

        return run_pytest(raw[2:])
    if raw[:1] == ["worker"] and raw[1:2] in (["cordon"], ["drain"], ["uncordon"]):
        raw = ["worker-manage", *raw[1:]]
    if raw[:1] == ["ci"]:
        from cli.ci.main import run_ci

        return run_ci(raw[1:])
    after: list[str] | None = None
    if "--" in raw:
        cut = raw.index("--")
        raw, after = raw[:cut], raw[cut + 1 :]
    parser = _parser()
    args = parser.parse_args(raw)
    if args.cmd not in ("up", "worker", "agent"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `dtf tasks | head` ends quietly
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
