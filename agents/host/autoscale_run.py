"""`dtf agent autoscaler`: the autoscaler with its provider, connected and run until a signal."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from agents.control.autoscaler import AutoscalerAgent
from agents.control.scaling import Provider
from agents.host.launch import _close, _connected, run_until_signal
from agents.host.settings import Settings, credential
from agents.log.jetstream import JetStreamLog
from agents.wire.client import ApiClient
from dtf_core import autoscale
from dtf_core.errors import InvalidInput

WORKER_TOKEN_TTL_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class AutoscaleOptions:
    spec: str  # PROVIDER:MIN-MAX
    group: str = ""  # default: the provider's name
    slots: int | None = None  # per worker (local default: this host's cores)
    cooldown_s: float = 30.0
    up_cooldown_s: float = 0.0
    target_s: float = 5.0
    k8s_api: str = "https://kubernetes.default.svc"
    k8s_namespace: str = "default"
    k8s_deployment: str = "dtf-worker"
    k8s_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    k8s_ca_file: str | None = None
    docker_image: str = "dtf-worker"


def limits_of(opts: AutoscaleOptions) -> tuple[str, autoscale.Limits]:
    provider, low, high = autoscale.parse_spec(opts.spec)
    try:
        return provider, autoscale.Limits(
            min_workers=low, max_workers=high, cooldown_s=opts.cooldown_s,
            up_cooldown_s=opts.up_cooldown_s, target_s=opts.target_s)
    except ValueError as exc:
        raise InvalidInput(f"autoscaler: {exc}") from None


def make_provider(kind: str, opts: AutoscaleOptions, settings: Settings, api: ApiClient,
                  group: str, slots: int) -> Provider:
    secure = credential(settings) is not None

    async def issue(worker_id: str) -> str | None:
        if not secure:
            return None  # an --insecure-dev stack: workers connect without a credential
        granted = await api.issue_token(worker_id, "worker", WORKER_TOKEN_TTL_S, worker_id)
        return granted.token

    if kind == "local":
        from agents.host.scale_local import LocalProvider

        env = dict(os.environ)
        env["DTF_DATA_DIR"] = str(Path(settings.data_dir).resolve())
        return LocalProvider(server=settings.server, group=group,
                             data_dir=Path(settings.data_dir), issue_token=issue,
                             slots=slots, env=env)
    if kind == "kubernetes":
        from agents.host.scale_kube import KubernetesProvider

        return KubernetesProvider(api=opts.k8s_api, namespace=opts.k8s_namespace,
                                  deployment=opts.k8s_deployment,
                                  token_file=Path(opts.k8s_token_file),
                                  ca_file=opts.k8s_ca_file)
    from agents.host.scale_docker import DockerProvider

    return DockerProvider(image=opts.docker_image, server=settings.server, group=group,
                          issue_token=issue, slots=slots)


async def run_autoscaler(settings: Settings, opts: AutoscaleOptions) -> None:
    kind, limits = limits_of(opts)
    group = opts.group or kind
    slots = opts.slots or ((os.cpu_count() or 1) if kind == "local" else 1)
    if slots < 1:
        raise InvalidInput("--slots must be >= 1")
    nc = await _connected(settings, "dtf-autoscaler")
    try:
        api = ApiClient(nc, credential=credential(settings))
        provider = make_provider(kind, opts, settings, api, group, slots)
        agent = AutoscalerAgent(nc, JetStreamLog(nc), provider, group=group, limits=limits,
                                slots=slots, api=api, lead=settings.lead)
        await run_until_signal(agent.run, nc)
    finally:
        await asyncio.shield(_close(nc))
