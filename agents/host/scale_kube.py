"""The autoscaler's ``kubernetes`` provider: the worker Deployment's replicas, through the API.

It reads and patches the Deployment's scale subresource
(``/apis/apps/v1/namespaces/NS/deployments/NAME/scale``) with a JSON merge patch
``{"spec": {"replicas": N}}``, as the pod's service account (its token file, read at each
call so a rotated token is used). The API picks which pods go on a scale-down; each worker
stops cleanly on SIGTERM (its running attempts are requeued without spending a retry), and
the autoscaler drains the idle ones first, so the pods removed are normally idle.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dtf_core.errors import DTFError, InvalidInput

TIMEOUT_S = 10.0
MERGE_PATCH = "application/merge-patch+json"
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS-1123 label
DEPLOYMENT = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a DNS-1123 subdomain


def k8s_name(value: str, pattern: re.Pattern[str], what: str) -> str:
    if pattern.fullmatch(value) is None:
        raise InvalidInput(f"invalid Kubernetes {what} {value!r}: lowercase letters, digits "
                           "and '-' (RFC 1123)")
    return value


class KubernetesProvider:
    name = "kubernetes"

    def __init__(self, *, api: str, namespace: str, deployment: str, token_file: Path,
                 ca_file: str | None = None) -> None:
        if not api.startswith(("https://", "http://")):
            raise InvalidInput(f"the Kubernetes API must be an http(s) URL, not {api!r}")
        self.api = api.rstrip("/")
        self.namespace = k8s_name(namespace, NAMESPACE, "namespace")
        self.deployment = k8s_name(deployment, DEPLOYMENT, "deployment name")
        self.token_file = token_file
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.replicas: int | None = None  # as last read or written

    @property
    def path(self) -> str:
        return (f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
                f"{self.deployment}/scale")

    def _call(self, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise DTFError(f"cannot read the service account token {self.token_file}: "
                           f"{exc.strerror}") from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = MERGE_PATCH
        req = urllib.request.Request(self.api + self.path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S,
                                        context=self.context) as resp:
                answer: dict[str, Any] = json.loads(resp.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            raise DTFError(f"Kubernetes API {method} {self.path}: HTTP {exc.code} "
                           f"{exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise DTFError(f"Kubernetes API {method} {self.path}: {exc}") from None

    async def current(self) -> int:
        scale = await asyncio.to_thread(self._call, "GET", None)
        replicas = scale.get("spec", {}).get("replicas", 0)
        self.replicas = int(replicas) if isinstance(replicas, int) else 0
        return self.replicas

    async def scale_to(self, replicas: int) -> int:
        if replicas < 0:
            raise InvalidInput("replicas must be >= 0")
        await asyncio.to_thread(self._call, "PATCH", {"spec": {"replicas": replicas}})
        self.replicas = replicas
        return replicas

    async def start(self, worker_ids: Sequence[str]) -> list[str]:
        """The Deployment names its pods (and its workers their ids): ``""`` per worker."""
        base = self.replicas if self.replicas is not None else await self.current()
        await self.scale_to(base + len(worker_ids))
        return [""] * len(worker_ids)

    async def stop(self, worker_ids: Sequence[str]) -> None:
        base = self.replicas if self.replicas is not None else await self.current()
        await self.scale_to(max(0, base - len(worker_ids)))

    async def close(self) -> None:
        """The Deployment outlives the autoscaler: its replicas stay as they are."""
