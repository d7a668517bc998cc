"""The autoscaler's ``local`` provider: `dtf worker` processes on this host.

Each is started as `dtf up` starts its workers (``sys.executable -m cli.main worker``, an
argv list, its own log file), in the autoscaler's group, with a worker credential of its own:
a worker key the api creates for that worker id at the autoscaler's request, in a 0600
file (none on an ``--insecure-dev`` stack). Stopping is SIGTERM, after the autoscaler has
drained the worker; a worker that does not exit in time is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import psutil

from agents.auth.keyfiles import create_secret_file, ensure_private_dir, replace_secret_file
from dtf_core.ids import validate_id

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 15.0

# worker id -> its credential, a worker key (None: no auth)
IssueToken = Callable[[str], Awaitable[str | None]]


class LocalProvider:
    name = "local"

    def __init__(self, *, server: str, group: str, data_dir: Path,
                 issue_token: IssueToken, slots: int | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.server = server
        self.group = validate_id(group, "worker group")
        self.data_dir = data_dir
        self.issue_token = issue_token
        self.slots = slots
        self.env = env if env is not None else dict(os.environ)
        self.cwd = cwd  # where the workers run (a worker keeps its key under ./.dtf)
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    def argv(self, worker_id: str) -> list[str]:
        out = [sys.executable, "-m", "cli.main", "worker", "--id", worker_id,
               "--group", self.group, "--server", self.server]
        return out + (["--slots", str(self.slots)] if self.slots else [])

    async def _credential_file(self, worker_id: str) -> Path | None:
        token = await self.issue_token(worker_id)
        if token is None:
            return None
        cred_dir = self.data_dir / "autoscale" / "credentials"
        ensure_private_dir(cred_dir.parent)
        ensure_private_dir(cred_dir)
        path = cred_dir / f"{worker_id}.key"
        if path.exists():
            replace_secret_file(path, token.encode())
        else:
            create_secret_file(path, token.encode())
        return path

    async def start(self, worker_ids: Sequence[str]) -> list[str]:
        started: list[str] = []
        for wid in worker_ids:
            validate_id(wid, "worker id")
            env = dict(self.env)
            env.pop("DTF_TOKEN", None)  # never the autoscaler's own credential
            env.pop("DTF_TOKEN_FILE", None)
            cred = await self._credential_file(wid)
            if cred is not None:
                env["DTF_TOKEN_FILE"] = str(cred)
            log_path = self.data_dir / "logs" / f"{wid}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as out:  # noqa: ASYNC230 (a short, local open)
                self.procs[wid] = await asyncio.create_subprocess_exec(
                    *self.argv(wid), stdout=out, stderr=out,
                    stdin=asyncio.subprocess.DEVNULL, env=env, cwd=self.cwd)
            log.info("started worker %s (pid %d)", wid, self.procs[wid].pid)
            started.append(wid)
        return started

    async def stop(self, worker_ids: Sequence[str]) -> None:
        await asyncio.gather(*(self._stop_one(w) for w in worker_ids))

    async def _stop_one(self, worker_id: str) -> None:
        proc = self.procs.pop(worker_id, None)
        if proc is None:
            await asyncio.to_thread(self._stop_adopted, worker_id)
            return
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("worker %s did not stop in %.0fs; killing it", worker_id,
                        STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("stopped worker %s (exit %s)", worker_id, proc.returncode)

    def _stop_adopted(self, worker_id: str) -> None:
        """A worker of the group started by an earlier autoscaler process (killed, then
        restarted): found by its argv, which names its id and group, and stopped the same way."""
        wanted = self.argv(worker_id)[3:]  # worker --id ID --group GROUP --server URL ...
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info.get("cmdline") or []
            if cmd[1:3] == ["-m", "cli.main"] and cmd[3:3 + len(wanted)] == wanted:
                found.append(p)
        for p in found:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(found, timeout=STOP_TIMEOUT_S)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    log.warning("worker %s did not stop in %.0fs; killing it", worker_id,
                                STOP_TIMEOUT_S)
                    p.kill()
        if found:
            log.info("stopped worker %s, started by an earlier autoscaler", worker_id)

    def running(self) -> list[str]:
        return sorted(w for w, p in self.procs.items() if p.returncode is None)

    async def close(self) -> None:
        """The autoscaler stops: its workers stop too (cleanly: recovery requeues what they
        ran without spending a retry)."""
        await self.stop(list(self.procs))
