"""The `dtf` command line's arguments, and turning submit arguments into task specs."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, get_args

import msgspec

from agents.auth.roles import Role
from agents.host import settings as settings_mod
from cli import autoscale_args, bench_cmd, generate_cmd, init_cmd, report_cmds, rerun_cmd
from cli import client_cmds as cc
from cli import results_cmds as results
from cli.browser_submit import BROWSER_FLAGS, add_browser_arguments, browser_specs
from cli.workdirs import in_submitters_dir
from dtf_core.errors import InvalidInput
from dtf_core.spec import TaskSpec, command_spec, parse_specs
from dtf_core.task import Status


def parser() -> argparse.ArgumentParser:
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
    up.add_argument("--heartbeat-interval", type=float, default=None, metavar="S",
                    help="seconds between worker heartbeats (default 1; DTF_HEARTBEAT_INTERVAL)")
    up.add_argument("--heartbeat-misses", type=int, default=None, metavar="N",
                    help="missed heartbeats before a worker is lost (default 5; "
                         "DTF_HEARTBEAT_MISSES)")
    up.add_argument("--cluster", type=int, default=1, metavar="N",
                    help="N local NATS nodes (ports PORT..PORT+N-1), R3 streams and two of "
                         "every agent (default 1)")
    up.add_argument("--slots", type=int, default=None, help="tasks per worker (default: cores)")
    up.add_argument("--insecure-dev", action="store_true",
                    help="no authentication (loopback development only)")
    up.add_argument("--tls", action="store_true",
                    help="TLS for every connection, with a local CA made once in the data dir")
    up.add_argument("--host", default="127.0.0.1",
                    help="address NATS listens on (default 127.0.0.1; others need auth)")
    up.add_argument("--insecure-network", action="store_true",
                    help="allow a non-loopback --host without --tls (tokens in cleartext)")
    up.add_argument("--task-user", default=None, metavar="USER",
                    help="local workers run tasks as this account (dtf up runs as root)")
    up.add_argument("--http-port", type=int, default=8080, metavar="PORT",
                    help="the REST API and dashboard's port (default 8080)")
    up.add_argument("--http-host", default="127.0.0.1",
                    help="address the REST API listens on (default 127.0.0.1)")
    up.add_argument("--no-http", action="store_true", help="no REST API or dashboard")

    w = client("worker", "run a worker daemon on this host; `dtf worker install --systemd` "
                         "or `--launchd` writes a service that runs it at boot")
    w.add_argument("action", nargs="?", choices=["install"], default=None,
                   help="install: write a service definition for this worker, do not run it")
    service = w.add_mutually_exclusive_group()
    service.add_argument("--systemd", action="store_true", help="install: a systemd unit")
    service.add_argument("--launchd", action="store_true", help="install: a launchd plist")
    w.add_argument("--unit-dir", default=None, metavar="DIR",
                   help="install: write it here (default: the service manager's own dir)")
    w.add_argument("--print", dest="print_only", action="store_true",
                   help="install: print it instead of writing it")
    w.add_argument("--force", action="store_true", help="install: replace an existing one")
    w.add_argument("--id", dest="worker_id", default=None)
    w.add_argument("--slots", type=int, default=None)
    w.add_argument("--tags", default="", help="comma-separated free-form capabilities")
    w.add_argument("--group", default="", help="the named pool this worker serves")
    w.add_argument("--task-user", default=None, metavar="USER",
                   help="run tasks as this account (the worker runs as root): they cannot "
                        "read the stack's credentials and keys")

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
    rp.add_argument("--no-snapshot", dest="snapshot", action="store_false",
                    help="fold from the first event, not from the newest snapshot")

    sim = client("simulate", "replay the recorded submissions and workers under a policy")
    sim.add_argument("--policy", default="default", help="default, fifo, or a plug-in's name")
    sim.add_argument("--from", dest="from_seq", type=int, default=1, metavar="SEQ")

    ex = client("explain", "why a task waits, or why it went where it went")
    ex.add_argument("id")

    a = client("agent", "run one agent daemon")
    a.add_argument("kind", choices=["api", "scheduler", "recovery", "projector", "control",
                                     "http", "autoscaler"],
                   help="control = api + scheduler + recovery sharing one fold; http = the "
                        "REST API and dashboard; autoscaler = workers by the queue")
    a.add_argument("--http-port", type=int, default=8080, metavar="PORT",
                   help="http: the port (default 8080)")
    a.add_argument("--http-host", default="127.0.0.1", help="http: the address (default "
                   "127.0.0.1)")
    a.add_argument("--db", default=None, help="projector: DuckDB file")
    a.add_argument("--keys", default=None, help="api/control: signing key dir (to issue tokens)")
    a.add_argument("--insecure-dev", action="store_true", help="api/control: no authentication")
    autoscale_args.add(up, a, sim)  # --autoscale, the autoscaler's, --extra-workers

    s = client("submit", "submit task JSON (file or -) or a command after --")
    s.add_argument("file", nargs="?", help="task JSON file (one object or a list), or -")
    s.add_argument("--name", default="")
    s.add_argument("--priority", type=int, default=None)
    s.add_argument("--timeout", type=float, default=None, help="seconds")
    s.add_argument("--retries", type=int, default=None)
    s.add_argument("--retry-delay", type=float, default=None)
    s.add_argument("--idempotency-key", default=None)
    s.add_argument("--cwd", default=None)
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable of the task (readers see the name only; "
                        "the value is in the event log)")
    s.add_argument("--pack", choices=["auto", "always", "never"], default="auto",
                   help="send the directory's tree to workers on other hosts, which run "
                        "the command in a copy of it (auto: when a live worker is on "
                        "another host)")
    s.add_argument("--secret-env", action="append", default=[], metavar="NAME",
                   help="pass NAME from your environment, sealed: the log holds it "
                        "encrypted, and only the worker running the task can open it")
    add_browser_arguments(s)
    s.add_argument("--requires", action="append", default=[], metavar="HARDWARE")
    s.add_argument("--min-memory-gb", type=float, default=None)
    s.add_argument("--gpus", type=int, default=None,
                   help="GPUs to reserve; the task sees only those (CUDA_VISIBLE_DEVICES)")
    s.add_argument("--min-cuda-compute", type=float, default=None, metavar="X.Y")
    s.add_argument("--group", default=None, help="only workers of this group")
    s.add_argument("--depends-on", action="append", default=[], metavar="TASK_ID")
    s.add_argument("--run-name", default="")

    wt = client("wait", "wait for tasks; exit 0 if all succeeded, 1 otherwise")
    wt.add_argument("ids", nargs="+")
    wt.add_argument("--timeout", type=float, default=None)

    t = client("tasks", "list tasks")
    t.add_argument("--status", default=None, choices=list(get_args(Status)),
                   help="only tasks in this status")
    t.add_argument("--run", dest="run_id", default=None)
    t.add_argument("--limit", type=int, default=50)

    one = client("task", "show a task and its event history")
    one.add_argument("id")

    client("workers", "list workers (alive and lost; --json: all)").add_argument(
        "--all", action="store_true", help="stopped workers too")
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
    tok.add_argument("jti", nargs="?", help="revoke: a token id ('-x...': after '--')")
    tok.add_argument("--role", choices=[str(role) for role in Role])
    tok.add_argument("--sub", default=None, help="issue: the subject (default: the role)")
    tok.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    tok.add_argument("--worker-id", default=None, help="a worker's id; an autoscaler's group")
    tok.add_argument("--reason", default="")

    tok.add_argument("--login", action="store_true",
                     help="issue: also print a login link to the dashboard (--ttl: how long "
                          "the link works; the session it opens lasts 8 hours)")
    tok.add_argument("--url", default=None, help="--login: the REST API's URL (default: the "
                     "one `dtf up` recorded)")

    dash = client("dashboard", "print a login link to the dashboard, for your credential")
    dash.add_argument("--url", default=None,
                      help="the REST API's URL (default: the one `dtf up` recorded)")
    dash.add_argument("--ttl", default="2m", help="how long the link works (default 2m)")
    dash.add_argument("--open", action="store_true", help="open it in a browser too")

    ks = client("keys", "rotate the token signing key, or retire an old one")
    ks.add_argument("action", choices=["rotate", "retire"])
    ks.add_argument("kid", nargs="?", help="retire: the key id")

    wk = client("worker-key", "create or revoke a worker's API key")
    wk.add_argument("action", choices=["create", "revoke"])
    wk.add_argument("id", help="create: the worker id; revoke: the key id")
    wk.add_argument("--reason", default="")
    results.add_parsers(client)
    report_cmds.add_parsers(client)
    rerun_cmd.add_parser(client)
    bench_cmd.add_parser(client)
    generate_cmd.add_parsers(client)
    init_cmd.add_parser(client)
    return p


def parse_ttl(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise InvalidInput(f"invalid --ttl {text!r}: use e.g. 90s, 30m, 1h or 7d") from None


def specs_from_args(args: argparse.Namespace, argv: list[str] | None) -> list[TaskSpec]:
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
    wanted = {"hardware": args.requires, "min_memory_gb": args.min_memory_gb,
              "gpus": args.gpus, "min_cuda_compute": args.min_cuda_compute,
              "worker_group": args.group}
    if any(v not in (None, []) for v in wanted.values()):
        fields["requirements"] = {k: v for k, v in wanted.items() if v not in (None, [])}
    if args.depends_on:
        fields["dependencies"] = args.depends_on
    if any(getattr(args, k) is not None for k in BROWSER_FLAGS):
        return browser_specs(args, argv, fields)  # cli/browser_submit.py
    if argv is not None:
        if args.file is not None:
            raise InvalidInput("give either a task JSON file or a command after --, not both")
        if not argv:
            raise InvalidInput("no command after --")
        config: dict[str, Any] = {"argv": argv}
        if args.env:
            config["env"] = cc.parse_env(args.env)
        if args.secret_env:
            config["secret_env"] = secret_env(args.secret_env)
        return [in_submitters_dir(_convert_command(config, fields), args.cwd)]
    if args.file is None:
        raise InvalidInput("nothing to submit: give a task JSON file, - for stdin, or -- CMD...")
    data = sys.stdin.buffer.read() if args.file == "-" else _read(args.file)
    specs = [in_submitters_dir(s, args.cwd) for s in parse_specs(data)]
    if args.idempotency_key:
        specs = [s if s.idempotency_key else msgspec.structs.replace(
            s, idempotency_key=f"{args.idempotency_key}/{i}") for i, s in enumerate(specs)]
    return specs


def secret_env(names: list[str]) -> dict[str, str]:
    """``--secret-env NAME``: the value from the submitter's own environment."""
    out: dict[str, str] = {}
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
            raise InvalidInput(f"--secret-env {name!r}: give the name of an environment "
                               "variable (its value is read from your environment)")
        if name not in os.environ:
            raise InvalidInput(f"--secret-env {name}: {name} is not set in your environment")
        out[name] = os.environ[name]
    return out


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
