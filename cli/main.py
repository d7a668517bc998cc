"""`dtf`: the command line. Thin: parse, load settings, call, render."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from agents.host import settings as settings_mod
from cli import client_cmds as cc
from cli import render
from cli.args import parse_ttl, parser, specs_from_args
from dtf_core.errors import DTFError, InvalidInput, NotFound
from dtf_core.events.task import TERMINAL_TYPES


def _run(args: argparse.Namespace, argv_after: list[str] | None) -> int:
    cfg = settings_mod.load(server=args.server)
    server = cfg.server
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
            from agents.host.launch import run_agent

            cfg = msgspec.structs.replace(cfg, server=server)
            asyncio.run(run_agent(args.kind, cfg, db_path=args.db, keys_dir=args.keys,
                                  insecure=args.insecure_dev))
            return 0
        case "worker":
            from agents.host.launch import run_worker

            cfg = msgspec.structs.replace(cfg, server=server)
            tags = tuple(t for t in args.tags.split(",") if t)
            asyncio.run(run_worker(cfg, worker_id=args.worker_id, slots=args.slots, tags=tags,
                                   group=args.group, task_user=args.task_user,
                                   credential=target.credential))
            return 0
        case "submit":
            specs = specs_from_args(args, argv_after)
            res = asyncio.run(cc.submit(target, specs, run_name=args.run_name,
                                        pack=args.pack))
            if args.json:
                render.emit_json({"id": res.ids[0]} if len(res.ids) == 1 else
                                 {"ids": res.ids, "run_id": res.run_id})
            else:
                sys.stdout.write("\n".join(res.ids) + "\n")
            return 0
        case "worker-manage":
            res = asyncio.run(cc.call(target, "manage_worker", args.id, args.action,
                                      args.reason))
            _emit(args, res, render.worker_scheduling)
            return 0
        case "audit":
            from cli import audit_cmds

            if args.kind == "verify":
                result = asyncio.run(audit_cmds.audit_verify(target))
                _emit(args, result, render.audit)
                return 0 if result["clean"] else 1
            if args.id is None:
                raise InvalidInput(f"dtf audit {args.kind} needs an id")
            rows = asyncio.run(audit_cmds.history(target, args.kind, args.id))
            if not rows:
                raise NotFound(f"no events for {args.kind} {args.id}")
            _emit(args, rows, render.history)
            return 0
        case "replay":
            from cli import audit_cmds

            state = asyncio.run(audit_cmds.replay(target, args.at))
            _emit(args, state, render.replayed)
            return 0
        case "simulate":
            res = asyncio.run(cc.simulate(target, args.policy, args.from_seq))
            _emit(args, res, render.simulation)
            return 0
        case "explain":
            res = asyncio.run(cc.call(target, "explain", args.id))
            _emit(args, res, lambda r: "\n".join(r["lines"]) + "\n")
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
            render.emit_json(res) if args.json else sys.stdout.write(_fields(res) + "\n")
            return 0
        case "token" | "worker-key":
            res = asyncio.run(_auth_command(args, target))
            if args.json:
                render.emit_json(res)
            else:
                secret = res.get("token") or res.get("key")
                sys.stdout.write((secret or _fields(res)) + "\n")
                if secret:  # the secret alone on stdout, for scripts; the rest for people
                    about = {k: v for k, v in res.items() if k not in ("token", "key")}
                    sys.stderr.write(_fields(about) + "\n")
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
                for role, claim in st.get("leaders", {}).items():
                    sys.stdout.write(f"{role} leader: {claim['holder']} (term {claim['term']})\n")
            return 0
    return 2


def _fields(res: Any) -> str:
    """A result for people: ``key=value`` pairs (``--json`` gives the JSON)."""
    if isinstance(res, dict):
        return " ".join(f"{k}={v}" for k, v in res.items())
    return str(res)


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


def _emit(args: argparse.Namespace, value: Any, text: Callable[[Any], str]) -> None:
    """``--json``: the value as JSON; otherwise its rendering."""
    if args.json:
        render.emit_json(value)
    else:
        sys.stdout.write(text(value))


def _up(args: argparse.Namespace, cfg: settings_mod.Settings) -> int:
    from agents.host.launch import run_until_signal
    from agents.host.supervisor import Stack, up

    if args.workers < 0 or (args.slots is not None and args.slots < 1):
        raise InvalidInput("--workers must be >= 0 and --slots >= 1")
    if args.heartbeat_interval is not None:
        if not 0.05 <= args.heartbeat_interval <= 3600:
            raise InvalidInput("--heartbeat-interval takes 0.05 to 3600 seconds")
        os.environ["DTF_HEARTBEAT_INTERVAL"] = repr(args.heartbeat_interval)  # the children
    if args.heartbeat_misses is not None:
        if not 1 <= args.heartbeat_misses <= 1000:
            raise InvalidInput("--heartbeat-misses takes 1 to 1000")
        os.environ["DTF_HEARTBEAT_MISSES"] = str(args.heartbeat_misses)
    if args.cluster not in (1, 3, 5):
        raise InvalidInput("--cluster takes 1, 3 or 5 nodes (an odd number keeps a quorum)")
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if args.insecure_dev and not loopback:
        raise InvalidInput("--insecure-dev listens on loopback only; drop --host")
    if not loopback and not args.tls and not args.insecure_network:
        raise InvalidInput(f"--host {args.host} without --tls would send every credential in "
                           "cleartext over the network: add --tls (workers then need "
                           "DTF_TLS_CA=<data dir>/tls/ca.pem), or --insecure-network to "
                           "accept that")
    if args.task_user:
        from agents.worker.runner import TaskUser

        TaskUser.lookup(args.task_user)  # refused now, with its reason, not in each worker
    data_dir = args.data_dir or os.environ.get("DTF_DATA_DIR") or ".dtf"  # never the context's
    stack = Stack(data_dir=Path(data_dir).resolve(), port=args.port,
                  workers=args.workers, slots=args.slots, insecure=args.insecure_dev,
                  host=args.host, tls=args.tls, cluster=args.cluster, task_user=args.task_user)

    def ready(s: Stack) -> None:
        context = settings_mod.write_context(s.url, s.data_dir)
        sys.stdout.write(f"DTF ready at {s.url}\n")
        if not s.insecure:
            sys.stdout.write(f"admin credential: {s.data_dir / 'admin.jwt'} (clients of this "
                             f"user on this host find it through {context})\n")
        sys.stdout.flush()

    asyncio.run(run_until_signal(lambda: up(stack, ready)))
    return 0


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
