"""The DTF side of ``pytest --dtf``: connect, ask for workers and durations, pack the code,
and turn the collected items into test tasks."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from nats.aio.client import Client

from agents.client import ApiClient
from agents.nats_conn import connect
from agents.packs import put_pack, tree_digest, tree_files
from cli.client_cmds import Target
from cli.pytest.split import split
from dtf_core import subjects
from dtf_core.events.worker import Capabilities
from dtf_core.placement import mismatch
from dtf_core.spec import Requirements, TaskSpec

if TYPE_CHECKING:
    from cli.pytest.plugin import DtfRun

LIVE = ("alive", "idle", "busy")
DURATIONS_CHUNK = 2000


def target_from_config(config: pytest.Config) -> Target:
    from agents import settings as settings_mod

    cfg = settings_mod.load()
    return Target(config.getoption("dtf_server") or cfg.server,
                  settings_mod.credential(cfg), settings_mod.tls_ca(cfg))


@dataclass(frozen=True)
class RunPlan:
    specs: list[TaskSpec]
    template: dict[str, Any]


@dataclass
class Remote:
    nc: Client
    api: ApiClient

    @classmethod
    async def open(cls, target: Target) -> Remote:
        nc = await connect(target.server, "dtf-pytest", reconnect=False,
                           credential=target.credential, tls_ca=target.tls_ca)
        return cls(nc, ApiClient(nc, credential=target.credential))

    async def close(self) -> None:
        await self.nc.close()

    async def durations(self, node_ids: list[str]) -> dict[str, float]:
        """Measured durations from the projection; empty when the projector is not there."""
        out: dict[str, float] = {}
        for i in range(0, len(node_ids), DURATIONS_CHUNK):
            body = msgspec.json.encode({"node_ids": node_ids[i:i + DURATIONS_CHUNK]})
            try:
                msg = await self.nc.request(subjects.Q_TEST_DURATIONS, body, timeout=10,
                                            headers=self.api.headers)
                reply = msgspec.json.decode(msg.data)
            except Exception:  # no projector: no history, said in the output
                return {}
            if not reply.get("ok"):
                return {}
            out.update({str(k): float(v) for k, v in reply["result"].items()})
        return out

    async def plan(self, run: DtfRun, session: pytest.Session) -> RunPlan:
        from cli.pytest.plugin import local_host, rel_args, requirements_of

        config = run.config
        workers = [w for w in await self.api.workers() if w.get("state") in LIVE]
        groups: dict[Requirements, list[str]] = defaultdict(list)
        for item in session.items:
            groups[requirements_of(item, run.by_path)].append(item.nodeid)
        root = Path(config.rootpath)
        files = tree_files(root)
        code = tree_digest(root, files)
        pack = config.getoption("dtf_pack")
        remote_hosts = {w["hostname"] for w in workers} - {local_host()}
        packed = pack == "always" or (pack == "auto" and bool(remote_hosts))
        if packed:
            uploaded = await put_pack(self.nc.jetstream(), root, files, code)
            run._say(f"code pack {code[:12]} ({len(files)} files) "
                     + ("uploaded" if uploaded else "already stored"))
        template: dict[str, Any] = {
            "files": list(rel_args(config, root)), "args": list(_args(config)),
            "rootdir": str(root), "host": local_host(), "code": code, "packed": packed,
        }
        durations = await self.durations([i.nodeid for i in session.items])
        specs: list[TaskSpec] = []
        timeout = config.getoption("dtf_chunk_timeout")
        for req, nodes in groups.items():
            matching = [w for w in workers if mismatch(
                req, msgspec.convert(w["capabilities"], Capabilities)) is None]
            if not matching:
                run_unmatched(run, nodes, req, allow=config.getoption("allow_unmatched"))
                continue
            result = split(nodes, durations, sum(int(w["slots"]) for w in matching))
            if result.by_history:
                run._say(f"{len(nodes)} tests in {len(result.chunks)} chunks, packed by "
                         f"measured durations ({result.known} known)")
            else:
                run._say(f"no duration history for {len(nodes) - result.known} of "
                         f"{len(nodes)} tests: splitting by file into "
                         f"{len(result.chunks)} chunks")
            for i, chunk in enumerate(result.chunks):
                specs.append(TaskSpec(
                    type="test", name=f"pytest chunk {i + 1}/{len(result.chunks)}",
                    priority=len(result.chunks) - i, requirements=req,
                    config={**template, "node_ids": chunk.node_ids}, timeout_seconds=timeout))
        return RunPlan(specs, template)


def run_unmatched(run: DtfRun, nodes: list[str], req: Requirements, *, allow: bool) -> None:
    what = msgspec.json.encode(msgspec.to_builtins(req)).decode()
    message = f"no live DTF worker meets this test's requirements {what}"
    run._say(f"{len(nodes)} tests need {what}, which no live worker has"
             + ("; skipped (--allow-unmatched)" if allow else "; they fail"))
    for nodeid in nodes:
        run._replay(nodeid, [run._synthetic(nodeid, "skipped" if allow else "failed", message)])


def _args(config: pytest.Config) -> tuple[str, ...]:
    from cli.pytest.plugin import worker_args

    extra = os.environ.get("DTF_PYTEST_WORKER_ARGS", "").split()
    return (*worker_args(config.invocation_params.args), *extra)
