"""The DTF side of ``pytest --dtf``: connect, ask for workers and durations, pack the code,
and turn the collected items into test tasks."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from nats.aio.client import Client

from agents.client import ApiClient
from agents.nats_conn import connect
from agents.packs import put_pack, put_plan, tree_digest, tree_files
from cli.client_cmds import Target
from cli.pytest.split import Entry, split
from dtf_core import subjects
from dtf_core.events.worker import Capabilities
from dtf_core.placement import mismatch
from dtf_core.spec import Requirements, TaskSpec

if TYPE_CHECKING:
    from cli.pytest.plugin import DtfRun

LIVE = ("alive", "idle", "busy")
DURATIONS_CHUNK = 2000
DURATIONS_BYTES = 256 * 1024


def target_from_config(config: pytest.Config) -> Target:
    from agents import settings as settings_mod

    cfg = settings_mod.load()
    return Target(config.getoption("dtf_server") or cfg.server,
                  settings_mod.credential(cfg), settings_mod.tls_ca(cfg))


@dataclass(frozen=True)
class RunPlan:
    specs: list[TaskSpec]
    chunks: list[list[str]]  # the node ids of each spec, in order
    template: dict[str, Any]


def batches(node_ids: list[str]) -> list[list[str]]:
    """Node ids in requests of bounded count and size (ids can be thousands of bytes)."""
    out: list[list[str]] = [[]]
    size = 0
    for nodeid in node_ids:
        if out[-1] and (len(out[-1]) >= DURATIONS_CHUNK
                        or size + len(nodeid) > DURATIONS_BYTES):
            out.append([])
            size = 0
        out[-1].append(nodeid)
        size += len(nodeid) + 8
    return [b for b in out if b]


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
        for batch in batches(node_ids):
            body = msgspec.json.encode({"node_ids": batch})
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
        from cli.pytest.plugin import local_host, requirements_of, session_template

        config = run.config
        workers = [w for w in await self.api.workers() if w.get("state") in LIVE]
        groups: dict[Requirements, list[Entry]] = defaultdict(list)
        for item in session.items:
            marker = item.get_closest_marker("xdist_group")
            group = str(marker.args[0] if marker.args else marker.kwargs.get("name", "")) \
                if marker is not None else ""
            groups[requirements_of(item, run.by_path)].append(Entry(item.nodeid, group))
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
        template = session_template(config, root, code=code, packed=packed)
        template["run"] = run.run_id
        durations = await self.durations([i.nodeid for i in session.items])
        mode = config.getoption("dtf_dist")
        chunks: list[list[str]] = []
        meta: list[tuple[Requirements, int, int]] = []  # requirements, index, count
        timeout = config.getoption("dtf_chunk_timeout")
        for req, tests in groups.items():
            matching = [w for w in workers if mismatch(
                req, msgspec.convert(w["capabilities"], Capabilities)) is None]
            if not matching:
                run_unmatched(run, [t.nodeid for t in tests], req,
                              allow=config.getoption("allow_unmatched"))
                continue
            slots = sum(int(w["slots"]) for w in matching)
            template["workers"] = max(template.get("workers", 1), slots)
            result = split(tests, durations, slots, mode)
            how = (f"packed by measured durations ({result.known} known)" if result.by_history
                   else f"no duration history for {len(tests) - result.known} of {len(tests)} "
                        "tests: packed by test count")
            run._say(f"{len(tests)} tests in {len(result.chunks)} chunks of {result.units} "
                     f"{mode} units, {how}")
            for i, chunk in enumerate(result.chunks):
                chunks.append(chunk.node_ids)
                meta.append((req, i, len(result.chunks)))
        if not chunks:
            return RunPlan([], [], template)
        digest = await put_plan(self.nc.jetstream(), chunks)
        specs = [TaskSpec(type="test", name=f"pytest chunk {i + 1}/{n}", priority=n - i,
                          requirements=req, timeout_seconds=timeout,
                          config={**template, "plan": digest, "chunk": index})
                 for index, (req, i, n) in enumerate(meta)]
        return RunPlan(specs, chunks, template)


def run_unmatched(run: DtfRun, nodes: list[str], req: Requirements, *, allow: bool) -> None:
    what = msgspec.json.encode(msgspec.to_builtins(req)).decode()
    message = f"no live DTF worker meets this test's requirements {what}"
    run._say(f"{len(nodes)} tests need {what}, which no live worker has"
             + ("; skipped (--allow-unmatched)" if allow else "; they fail"))
    for nodeid in nodes:
        run._replay(nodeid, [run._synthetic(nodeid, "skipped" if allow else "failed", message)])
