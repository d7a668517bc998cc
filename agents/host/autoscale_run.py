"""`dtf agent autoscaler`: the autoscaler with its provider, connected and run until a signal."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from agents.auth.server_auth import unverified_claims
from agents.control.autoscaler import AutoscalerAgent
from agents.control.scaling import Provider
from agents.host.launch import _close, _connected, run_until_signal
from agents.host.settings import Settings, credential
from agents.log.jetstream import JetStreamLog
from agents.wire.client import ApiClient
from dtf_core import autoscale
from dtf_core.errors import InvalidInput


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
        """A worker key of its own for each worker started (an autoscaler's credential
        may create one only for ``<group>-auto-<n>``, a worker of its group not running)."""
        if not secure:
            return None  # an --insecure-dev stack: workers connect without a credential
        return (await api.create_api_key(worker_id)).key

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


def scope_of(cred: str | None, group: str) -> bool:
    """Whether ``cred`` is an autoscaler's (rather than an admin's, or none); one for
    another group is refused here, with its reason, rather than by every request."""
    claims = unverified_claims(cred) if cred else None
    if claims is None or claims.get("role") != "autoscaler":
        return False
    if claims.get("wid") != group:
        raise InvalidInput(f"this autoscaler credential is for worker group "
                           f"{claims.get('wid')!r}, not {group!r} (--group)")
    return True


async def run_autoscaler(settings: Settings, opts: AutoscaleOptions) -> None:
    kind, limits = limits_of(opts)
    group = opts.group or kind
    slots = opts.slots or ((os.cpu_count() or 1) if kind == "local" else 1)
    if slots < 1:
        raise InvalidInput("--slots must be >= 1")
    cred = credential(settings)
    scoped = scope_of(cred, group)
    # an autoscaler's credential may not create streams, nor consumers: the api opens its
    # tail of the log (as for any client), into its own inbox
    nc = await _connected(settings, "dtf-autoscaler", streams=not scoped)
    try:
        api = ApiClient(nc, credential=cred)
        provider = make_provider(kind, opts, settings, api, group, slots)
        eventlog = JetStreamLog(nc, opener=api.open_tail if cred is not None else None)
        agent = AutoscalerAgent(nc, eventlog, provider, group=group, limits=limits,
                                slots=slots, api=api, lead=settings.lead)
        await run_until_signal(agent.run, nc)
    finally:
        await asyncio.shield(_close(nc))
