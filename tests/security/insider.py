"""A real secure stack's insider: its admin, and what a logged-in reader, manager or worker
can reach."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from agents.nats.connect import connect
from agents.wire.client import ApiClient
from tests.dist import Dist


@dataclass
class Insider:
    """The stack, its admin, and what a logged-in reader, manager or worker can reach."""

    dist: Dist
    admin_nc: Client
    admin: ApiClient

    async def token(self, role: str, sub: str = "mallory", ttl: float = 3600,
                    worker_id: str | None = None) -> str:
        res = await self.admin.issue_token(sub, role, ttl, worker_id=worker_id)
        return res.token

    async def connect_as(self, credential: str, worker_id: str | None = None) -> Client:
        return await connect(self.dist.url, "insider", reconnect=False,
                             credential=credential, worker_id=worker_id)

    async def cli(self, *args: str, token: str | None = None, cwd: Path | None = None,
                  extra_env: dict[str, str] | None = None) -> tuple[int, str]:
        env = {**os.environ, **(extra_env or {}), "DTF_SERVER": self.dist.url,
               "DTF_TOKEN": token or self.dist.token,
               "DTF_DATA_DIR": str(self.dist.tmp / "nodata")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", *args, cwd=cwd or self.dist.tmp, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        code = proc.returncode or 0
        return code, out.decode() + (err.decode() if code else "")

    async def stream_state(self, stream: str) -> Any:
        return (await self.admin_nc.jetstream().stream_info(stream)).state

    async def junk_on(self, filter_subject: str) -> list[str]:
        """The messages on ``filter_subject`` of the events stream that are not events."""
        from agents.log.jetstream import JetStreamLog
        from dtf_core.events.codec import UndecodableEvent, decode

        junk = []
        for rec in await JetStreamLog(self.admin_nc).read([filter_subject], 1):
            try:
                decode(rec.subject, rec.data)
            except UndecodableEvent:
                junk.append(f"{rec.seq} {rec.subject}: {rec.data[:80]!r}")
        return junk
