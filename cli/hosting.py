"""`dtf up`, `dtf agent` and `dtf worker`: the commands that run processes of the stack
(rather than talk to one). Settings reach the children explicitly, through their argv and
the environment the supervisor gives each (never by changing this process's)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agents.host import settings as settings_mod
from cli import render
from cli.commands import Ctx
from dtf_core.errors import InvalidInput

if TYPE_CHECKING:
    from agents.host.autoscale_run import AutoscaleOptions


def agent(args: argparse.Namespace, ctx: Ctx, cfg: settings_mod.Settings) -> int:
    from agents.host import loop as agent_loop
    from agents.host.launch import run_agent

    if args.kind == "autoscaler":
        from agents.host.autoscale_run import run_autoscaler

        asyncio.run(run_autoscaler(cfg, autoscale_options(args)))
        return 0
    if args.kind == "http":
        from agents.host.launch import run_http

        agent_loop.run(run_http(cfg, host=args.http_host, port=args.http_port,
                                insecure=args.insecure_dev))
        return 0
    agent_loop.run(run_agent(args.kind, cfg, db_path=args.db, keys_dir=args.keys,
                             insecure=args.insecure_dev))
    return 0


def autoscale_options(args: argparse.Namespace) -> AutoscaleOptions:
    from agents.host.autoscale_run import AutoscaleOptions, limits_of

    if not args.autoscale:
        raise InvalidInput("dtf agent autoscaler needs --autoscale PROVIDER:MIN-MAX "
                           "(e.g. local:0-4)")
    if args.slots is not None and args.slots < 1:
        raise InvalidInput("--slots must be >= 1")
    opts = AutoscaleOptions(
        spec=args.autoscale, group=args.group, slots=args.slots, cooldown_s=args.cooldown,
        up_cooldown_s=args.up_cooldown, target_s=args.target, k8s_api=args.k8s_api,
        k8s_namespace=args.k8s_namespace,
        k8s_deployment=args.k8s_deployment, k8s_token_file=args.k8s_token_file,
        k8s_ca_file=args.k8s_ca_file, docker_image=args.docker_image)
    limits_of(opts)  # refused now, with its reason
    return opts


def worker(args: argparse.Namespace, ctx: Ctx, cfg: settings_mod.Settings) -> int:
    if args.action == "install":
        return install_worker(args, ctx)
    if args.systemd or args.launchd or args.unit_dir or args.print_only or args.force:
        raise InvalidInput("--systemd, --launchd, --unit-dir, --print and --force go with "
                           "`dtf worker install`")
    from agents.host import loop as agent_loop
    from agents.host.launch import run_worker

    tags = tuple(t for t in args.tags.split(",") if t)
    agent_loop.run(run_worker(cfg, worker_id=args.worker_id, slots=args.slots, tags=tags,
                              group=args.group, task_user=args.task_user,
                              credential=ctx.target.credential),
                   spawns_as_user=args.task_user is not None)
    return 0


def install_worker(args: argparse.Namespace, ctx: Ctx) -> int:
    from cli import service_install as si

    if not (args.systemd or args.launchd):
        raise InvalidInput("dtf worker install needs --systemd or --launchd")
    token_file = args.token_file or os.environ.get("DTF_TOKEN_FILE")
    argv = si.worker_argv(server=ctx.target.server, token_file=token_file,
                          worker_id=args.worker_id, slots=args.slots, tags=args.tags,
                          group=args.group, task_user=args.task_user)
    service = si.plan("systemd" if args.systemd else "launchd", argv,
                      unit_dir=args.unit_dir, name=args.worker_id or "default")
    if args.print_only:
        print(service.text, end="")
        return 0
    si.install(service, force=args.force)
    print(f"wrote {service.path}\nto start it now and at every boot:\n  {service.enable}")
    return 0


def _check_up(args: argparse.Namespace) -> None:
    if args.workers < 0 or (args.slots is not None and args.slots < 1):
        raise InvalidInput("--workers must be >= 0 and --slots >= 1")
    if args.heartbeat_interval is not None and not 0.05 <= args.heartbeat_interval <= 3600:
        raise InvalidInput("--heartbeat-interval takes 0.05 to 3600 seconds")
    if args.heartbeat_misses is not None and not 1 <= args.heartbeat_misses <= 1000:
        raise InvalidInput("--heartbeat-misses takes 1 to 1000")
    if args.cluster not in (1, 3, 5):
        raise InvalidInput("--cluster takes 1, 3 or 5 nodes (an odd number keeps a quorum)")
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if not args.no_http and args.http_host not in ("127.0.0.1", "localhost", "::1") \
            and not args.insecure_network:
        raise InvalidInput("the REST API speaks plain HTTP (session cookies and tokens in "
                           "cleartext): keep --http-host on loopback behind a TLS proxy, or "
                           "pass --insecure-network")
    if args.insecure_dev and not loopback:
        raise InvalidInput("--insecure-dev listens on loopback only; drop --host")
    if not loopback and not args.tls and not args.insecure_network:
        raise InvalidInput(f"--host {args.host} without --tls would send every credential in "
                           "cleartext over the network: add --tls (workers then need "
                           "DTF_TLS_CA=<data dir>/tls/ca.pem), or --insecure-network to "
                           "accept that")
    if args.autoscale is not None:
        from dtf_core.autoscale import parse_spec

        if parse_spec(args.autoscale)[0] != "local":
            raise InvalidInput("dtf up --autoscale takes local:MIN-MAX; run `dtf agent "
                               "autoscaler --autoscale docker:...|kubernetes:...` for the others")
        if args.task_user:
            raise InvalidInput("--autoscale with --task-user is not supported yet: the "
                               "autoscaled workers would run tasks as this account")
    if args.task_user:
        from agents.worker.runner import TaskUser

        TaskUser.lookup(args.task_user)  # refused now, with its reason, not in each worker


def up(args: argparse.Namespace, ctx: Ctx, cfg: settings_mod.Settings) -> int:
    from agents.host.launch import run_until_signal
    from agents.host.supervisor import Stack
    from agents.host.supervisor import up as run_stack

    _check_up(args)
    data_dir = args.data_dir or cfg.data_dir_given or ".dtf"  # never the context's
    stack = Stack(data_dir=Path(data_dir).resolve(), port=args.port,
                  workers=args.workers, slots=args.slots, insecure=args.insecure_dev,
                  host=args.host, tls=args.tls, cluster=args.cluster, task_user=args.task_user,
                  heartbeat_interval=args.heartbeat_interval,
                  heartbeat_misses=args.heartbeat_misses,
                  http_port=None if args.no_http else args.http_port, http_host=args.http_host,
                  autoscale=args.autoscale)

    def ready(s: Stack) -> None:
        context = settings_mod.write_context(s.url, s.data_dir, http=s.http_url)
        render.out(f"DTF ready at {s.url}")
        if not s.insecure:
            render.out(f"admin credential: {s.data_dir / 'admin.jwt'} (clients of this "
                       f"user on this host find it through {context})")
        if s.http_url:
            render.out(f"dashboard at {s.http_url} (`dtf dashboard` prints a login link); "
                       f"REST API at {s.http_url}api/")
        sys.stdout.flush()

    asyncio.run(run_until_signal(lambda: run_stack(stack, ready)))
    return 0
