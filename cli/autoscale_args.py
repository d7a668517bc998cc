"""The autoscaler's command-line options (docs/autoscaling.md)."""

from __future__ import annotations

import argparse


def add(up: argparse.ArgumentParser, a: argparse.ArgumentParser,
        sim: argparse.ArgumentParser) -> None:
    """`dtf up --autoscale`, `dtf agent autoscaler`'s options and `dtf simulate
    --extra-workers` (docs/autoscaling.md)."""
    up.add_argument("--autoscale", default=None, metavar="local:MIN-MAX",
                    help="an autoscaler of MIN to MAX more local workers")
    sim.add_argument("--extra-workers", type=int, default=0, metavar="K",
                     help="K more workers from the first submission on")
    a.add_argument("--autoscale", default=None, metavar="PROVIDER:MIN-MAX",
                   help="autoscaler: local, docker or kubernetes, and the bounds (local:0-4)")
    a.add_argument("--group", default="", help="autoscaler: the worker group it manages "
                   "(default: the provider's name)")
    a.add_argument("--slots", type=int, default=None, help="autoscaler: tasks per worker")
    a.add_argument("--cooldown", type=float, default=30.0, metavar="S",
                   help="autoscaler: no scale-down sooner than this after a change (30)")
    a.add_argument("--up-cooldown", type=float, default=0.0, metavar="S",
                   help="autoscaler: no second scale-up sooner than this after one (0)")
    a.add_argument("--target", type=float, default=5.0, metavar="S",
                   help="autoscaler: the queued work should end within this (5)")
    a.add_argument("--k8s-api", default="https://kubernetes.default.svc")
    a.add_argument("--k8s-namespace", default="default")
    a.add_argument("--k8s-deployment", default="dtf-worker")
    a.add_argument("--k8s-token-file",
                   default="/var/run/secrets/kubernetes.io/serviceaccount/token")
    a.add_argument("--k8s-ca-file", default=None)
    a.add_argument("--docker-image", default="dtf-worker")
