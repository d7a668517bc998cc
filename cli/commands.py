"""One small function per `dtf` command that talks to a running stack: call the api
through a typed client method, then render (``cli/render.py``). Each returns the exit
status."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents.host import loop as agent_loop
from agents.host.settings import read_context
from agents.wire.client import ApiClient
from cli import (
    bench_cmd,
    generate_cmd,
    init_cmd,
    output_cmds,
    render,
    report_cmds,
    rerun_cmd,
    results_cmds,
)
from cli import client_cmds as cc
from cli.args import parse_ttl, specs_from_args
from dtf_core import replies as r
from dtf_core.errors import InvalidInput, NotFound, Refused


@dataclass(frozen=True)
class Ctx:
    """What every command gets besides its arguments."""

    target: cc.Target
    after: list[str] | None = None  # the argv after `--` (`dtf submit -- cmd args`)


def _emit(args: argparse.Namespace, value: object, text: Callable[[object], str]) -> None:
    """``--json``: the value as JSON; otherwise its rendering."""
    if args.json:
        render.emit_json(value)
    else:
        render.out(text(value))


def submit(args: argparse.Namespace, ctx: Ctx) -> int:
    specs = specs_from_args(args, ctx.after)
    res = agent_loop.run(cc.submit(ctx.target, specs, run_name=args.run_name, pack=args.pack))
    if args.json:
        render.emit_json({"id": res.ids[0]} if len(res.ids) == 1 else
                         {"ids": res.ids, "run_id": res.run_id})
    else:
        render.out(render.submitted(res.ids))
    return 0


def worker_manage(args: argparse.Namespace, ctx: Ctx) -> int:
    res = agent_loop.run(cc.ask(ctx.target, lambda api: api.manage_worker(
        args.id, args.action, args.reason)))
    _emit(args, res, lambda v: render.worker_scheduling(res))
    return 0


def audit(args: argparse.Namespace, ctx: Ctx) -> int:
    from cli import audit_cmds, audit_verify

    if args.kind == "verify":
        result = agent_loop.run(audit_verify.audit_verify(ctx.target))  # reads the whole log
        _emit(args, result, lambda v: render.audit(result))
        return 0 if result["clean"] else 1
    if args.id is None:
        raise InvalidInput(f"dtf audit {args.kind} needs an id")
    rows = agent_loop.run(audit_cmds.history(ctx.target, args.kind, args.id))
    if not rows:
        raise NotFound(f"no events for {args.kind} {args.id}")
    _emit(args, rows, lambda v: render.history(rows))
    return 0


def replay(args: argparse.Namespace, ctx: Ctx) -> int:
    from cli import audit_cmds

    state = agent_loop.run(audit_cmds.replay(ctx.target, args.at, args.snapshot))
    _emit(args, state, lambda v: render.replayed(state))
    return 0


def simulate(args: argparse.Namespace, ctx: Ctx) -> int:
    res = agent_loop.run(cc.simulate(ctx.target, args.policy, args.from_seq,
                                     args.extra_workers))
    _emit(args, res, lambda v: render.simulation(res))
    return 0


def explain(args: argparse.Namespace, ctx: Ctx) -> int:
    res = agent_loop.run(cc.ask(ctx.target, lambda api: api.explain(args.id)))
    _emit(args, res, lambda v: render.explanation(res))
    return 0


def artifacts(args: argparse.Namespace, ctx: Ctx) -> int:
    return agent_loop.run(output_cmds.artifacts(ctx.target, args.action, args.run_id, args.name,
                                    args.output, as_json=args.json))


def wait(args: argparse.Namespace, ctx: Ctx) -> int:
    with render.progress("tasks ended", enabled=not args.json) as progress:
        final = agent_loop.run(cc.wait(ctx.target, args.ids, args.timeout, progress))
    if args.json:
        render.emit_json({i: final[i].status for i in args.ids})
    else:
        render.out(render.waited(final, args.ids))
    return 0 if all(final[i].status == "succeeded" for i in args.ids) else 1


def tasks(args: argparse.Namespace, ctx: Ctx) -> int:
    rows = agent_loop.run(cc.ask(ctx.target, lambda api: api.tasks(
        status=args.status, run_id=args.run_id, limit=args.limit)))
    render.emit_json(rows) if args.json else render.tasks_table(rows)
    return 0


def task(args: argparse.Namespace, ctx: Ctx) -> int:
    t = agent_loop.run(cc.ask(ctx.target, lambda api: api.task(args.id)))
    render.emit_json(t) if args.json else render.task_detail(t)
    return 0


def workers(args: argparse.Namespace, ctx: Ctx) -> int:
    rows = agent_loop.run(cc.ask(ctx.target, lambda api: api.workers()))
    render.emit_json(rows) if args.json else render.workers_table(rows, args.all)
    return 0


def logs(args: argparse.Namespace, ctx: Ctx) -> int:
    return agent_loop.run(output_cmds.logs(ctx.target, args.id, args.follow))


def cancel(args: argparse.Namespace, ctx: Ctx) -> int:
    if args.run_id is not None:
        done = agent_loop.run(cc.cancel_run(ctx.target, args.run_id))
        if args.json:
            render.emit_json({"run_id": args.run_id, "cancelled": done})
        else:
            render.out(render.run_cancelled(args.run_id, done))
        return 0
    if args.id is None:
        raise InvalidInput("give a task id, or --run RUN")
    res = agent_loop.run(cc.ask(ctx.target, lambda api: api.cancel(args.id)))
    _emit(args, res, lambda v: render.cancelled(res))
    return 0


def keys(args: argparse.Namespace, ctx: Ctx) -> int:
    if args.action == "retire" and not args.kid:
        raise InvalidInput("keys retire needs the key id")
    if args.action == "rotate":
        rotated = agent_loop.run(cc.ask(ctx.target, lambda api: api.rotate_key()))
        _emit(args, rotated, render.fields)
    else:
        retired = agent_loop.run(cc.ask(ctx.target, lambda api: api.retire_key(args.kid)))
        _emit(args, retired, render.fields)
    return 0


def token(args: argparse.Namespace, ctx: Ctx) -> int:
    """`dtf token issue|refresh|revoke` and `dtf worker-key create|revoke`."""
    if getattr(args, "login", False) and args.action != "issue":
        raise InvalidInput("--login goes with `dtf token issue`")
    url = http_url(args, ctx) if getattr(args, "login", False) else None
    res = agent_loop.run(cc.ask(ctx.target, _auth_call(args)))
    if args.json:
        render.emit_json(res)
    else:
        render.secret(res)
    if url is not None and isinstance(res, r.TokenGranted):
        render.out(f"login link (works for {args.ttl}): {login_link(url, res.token)}")
    return 0


def dashboard(args: argparse.Namespace, ctx: Ctx) -> int:
    """A login link for the caller's own credential: a short-lived token refreshed from
    it (every role may refresh its own), which the HTTP agent trades for a session."""
    url = http_url(args, ctx)
    ttl = parse_ttl(args.ttl)
    try:
        granted = agent_loop.run(cc.ask(ctx.target, lambda api: api.refresh_token(ttl)))
    except Refused as exc:  # the api's limit: one refresh a minute per credential
        raise Refused(f"{exc}: a credential makes one login link a minute; open the one "
                      f"printed before (it works for {args.ttl}), or wait") from None
    link = login_link(url, granted.token)
    if args.json:
        render.emit_json({"url": url, "login": link, "expires_in_s": ttl})
    else:
        render.out(f"{link}\n(the link works for {args.ttl}; it opens an 8-hour session)")
    if args.open:
        import webbrowser

        webbrowser.open(link)
    return 0


def http_url(args: argparse.Namespace, ctx: Ctx) -> str:
    context = read_context()
    url = args.url or (context.get("http") if context.get("server") == ctx.target.server
                       else None)
    if not url:
        raise InvalidInput("no REST API known for this stack: pass --url "
                           "http://HOST:PORT/ (`dtf up` prints it)")
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"invalid --url {url!r}: use http://HOST:PORT/")
    return url if url.endswith("/") else url + "/"


def login_link(url: str, token: str) -> str:
    return f"{url}login?token={token}"


AuthReply = r.TokenGranted | r.RevokedToken | r.CreatedApiKey | r.RevokedApiKey


def _auth_call(args: argparse.Namespace) -> Callable[[ApiClient], Awaitable[AuthReply]]:
    if args.cmd == "worker-key":
        if args.action == "create":
            return lambda api: api.create_api_key(args.id)
        return lambda api: api.revoke_api_key(args.id, args.reason)
    if args.action == "issue":
        if args.role is None:
            raise InvalidInput("token issue needs --role")
        ttl = parse_ttl(args.ttl)
        scaler = args.role == "autoscaler" and args.worker_id  # its group: autoscaler-GROUP
        sub = args.sub or (f"autoscaler-{args.worker_id}" if scaler else None)
        return lambda api: api.issue_token(sub or args.worker_id or args.role, args.role,
                                           ttl, args.worker_id)
    if args.action == "refresh":
        ttl = parse_ttl(args.ttl)
        return lambda api: api.refresh_token(ttl)
    if not args.jti:
        raise InvalidInput("token revoke needs the token id (jti)")
    return lambda api: api.revoke_token(args.jti, args.reason)


def status(args: argparse.Namespace, ctx: Ctx) -> int:
    st, projector = agent_loop.run(cc.status(ctx.target))
    if args.json:
        render.status_json(st, projector)
    else:
        render.out(render.status(st, projector))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Ctx], int]] = {
    "submit": submit,
    "worker-manage": worker_manage,
    "audit": audit,
    "replay": replay,
    "simulate": simulate,
    "explain": explain,
    "artifacts": artifacts,
    "wait": wait,
    "tasks": tasks,
    "task": task,
    "workers": workers,
    "logs": logs,
    "cancel": cancel,
    "keys": keys,
    "token": token,
    "worker-key": token,
    "status": status,
    "dashboard": dashboard,
    "results": lambda args, ctx: results_cmds.results(args, ctx.target),
    "trends": lambda args, ctx: report_cmds.trends_cmd(args, ctx.target),
    "report": lambda args, ctx: report_cmds.report_cmd(args, ctx.target),
    "rerun": lambda args, ctx: rerun_cmd.rerun_cmd(args, ctx.target),
    "bench": lambda args, ctx: bench_cmd.bench_cmd(args, ctx.target, ctx.after),
    "generate": lambda args, ctx: generate_cmd.generate_cmd(args, ctx.target),
    "templates": lambda args, ctx: generate_cmd.templates_cmd(args),
    "init": lambda args, ctx: init_cmd.init_cmd(args),
}
