"""`dtf up`'s child processes: each agent and local worker, with its log file and the
environment that gives it its settings and credential; restarted when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.control.bootstrap import Credentials, keys_dir
from agents.proc.signals import stop_child
from agents.proc.tree import spawning_daemon

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env} if self.env else None
        with open(self.log_path, "ab") as out:  # noqa: ASYNC230 (a short, local open)
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, env=env,
                **spawning_daemon().kwargs(),
            )
        self.started_at = time.monotonic()

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            stop_child(self.proc)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def plan_children(data_dir: Path, url: str, env: dict[str, str], creds: Credentials | None,
                  *, standbys: bool, workers: int, slots: int | None,
                  task_user: str | None, http: tuple[str, int] | None = None,
                  autoscale: str | None = None) -> tuple[list[Child], list[Child]]:
    """The agents (a control plane and a projector, and a standby of each in a cluster;
    the standby projector keeps its own DuckDB file) and the local workers, each with
    ``env`` and its own credential file."""
    def argv(*args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", *args, "--server", url]

    logs = data_dir / "logs"
    security = ["--insecure-dev"] if creds is None else ["--keys", str(keys_dir(data_dir))]
    agents = [Child("control", argv("agent", "control", *security), logs / "control.log"),
              Child("projector", argv("agent", "projector", "--db",
                                      str(data_dir / "dtf.duckdb")), logs / "projector.log")]
    if standbys:
        agents += [Child("control-2", argv("agent", "control", *security),
                         logs / "control-2.log"),
                   Child("projector-2", argv("agent", "projector", "--db",
                                             str(data_dir / "dtf-2.duckdb")),
                         logs / "projector-2.log")]
    if http is not None:
        host, port = http
        no_auth = ["--insecure-dev"] if creds is None else []
        agents.append(Child("http", argv("agent", "http", "--http-host", host, "--http-port",
                                         str(port), *no_auth), logs / "http.log"))
    extra = ["--slots", str(slots)] if slots else []
    # The autoscaler's workers are its own children: it stops among the workers, before the
    # agents, so that its workers' stops still reach the api.
    scaler = [Child("autoscaler", argv("agent", "autoscaler", "--autoscale", autoscale,
                                       *extra), logs / "autoscaler.log")] if autoscale else []
    if task_user:
        extra += ["--task-user", task_user]
    local = [Child(f"worker-{i}", argv("worker", "--id", f"local-{i}", *extra),
                   logs / f"worker-{i}.log") for i in range(1, workers + 1)]
    for child in [*agents, *local, *scaler]:
        child.env = dict(env)
    if creds is not None:
        for child in [*agents, *scaler]:
            child.env["DTF_TOKEN_FILE"] = str(creds.files[f"agent-{child.name.split('-')[0]}"])
        for i, child in enumerate(local, start=1):
            child.env["DTF_TOKEN_FILE"] = str(creds.files[f"local-{i}"])
    return agents, [*local, *scaler]
