"""A real `dtf up --cluster 3` for chaos tests: three nats-server nodes with R3 streams, two
of every agent and local workers, started through the CLI as a user would, with handles on
each process so a test can kill, stop and resume them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect
from agents.wire.client import ApiClient
from dtf_core import subjects
from dtf_core.events.codec import Event, decode
from dtf_core.events.lead import LeadershipClaimed
from dtf_core.events.task import AttemptOutcome, TaskLeased
from tests.helpers import eventually

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
ROUTE_OFFSET = 2000


def bindable(port: int) -> bool:
    """Free to listen on: nothing listens there, and no connection holds it either (a
    port only checked for a listener can still be a client's, and the node's bind fails)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(size: int) -> int:
    """A port P with P..P+size-1 and their route ports P+2000.. all free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + ROUTE_OFFSET + size > 65000:
            continue
        ports = [base + i for i in range(size)] + [base + ROUTE_OFFSET + i for i in range(size)]
        if all(bindable(p) for p in ports):
            return base
    raise RuntimeError("no free port range for a local cluster")


def pid_of(holder: str) -> int:
    """The pid in a leadership holder id, ``name@host:pid:nonce`` (`holder_id`)."""
    return int(holder.split("@", 1)[1].split(":")[1])


@dataclass
class Cluster:
    data_dir: Path
    base: int
    size: int
    proc: subprocess.Popen[bytes]
    out: Path

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{self.base + i}" for i in range(self.size))

    @property
    def admin(self) -> str:
        return (self.data_dir / "admin.jwt").read_text().strip()

    def env(self) -> dict[str, str]:
        return {**os.environ, "DTF_SERVER": self.url,
                "DTF_TOKEN_FILE": str(self.data_dir / "admin.jwt")}

    def dtf(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "cli.main", *args], cwd=REPO, env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def node(self, i: int) -> psutil.Process:
        """nats-server node i (0-based): the one listening on base + i."""
        port = str(self.base + i)
        for p in self.children():
            with contextlib.suppress(psutil.Error):
                cmd = p.cmdline()
                if "nats-server" in cmd[0] and port in cmd:
                    return p
        raise LookupError(f"no nats-server on port {port}")

    def agents(self, role: str) -> list[psutil.Process]:
        """Agent processes of a role (control, projector), or workers by id (local-1)."""
        found = []
        for p in self.children():
            with contextlib.suppress(psutil.Error):
                cmd = p.cmdline()
                if ("agent" in cmd and role in cmd) or ("--id" in cmd and role in cmd):
                    found.append(p)
        return found

    def leader_pid(self, role: str) -> int:
        """The pid of the current holder of ``role``'s claim, as `dtf status` shows it."""
        status = json.loads(self.dtf("status", "--json").stdout)
        return pid_of(status["leaders"][role]["holder"])

    def audit_clean(self) -> None:
        done = self.dtf("audit", "verify", "--json")
        assert done.returncode == 0, f"audit verify found violations:\n{done.stdout}{done.stderr}"

    async def client(self) -> tuple[Any, ApiClient, JetStreamLog]:
        nc = await connect(self.url, "chaos-test", credential=self.admin)
        return nc, ApiClient(nc, credential=self.admin, timeout=10.0), JetStreamLog(nc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                for p in self.children():
                    with contextlib.suppress(psutil.Error):
                        p.kill()
                self.proc.kill()
                self.proc.wait()


def start(data_dir: Path, *, workers: int = 2, slots: int = 4, size: int = 3,
          base: int | None = None, extra_env: dict[str, str] | None = None) -> Cluster:
    base = base or free_base(size)
    out = data_dir.parent / f"{data_dir.name}-up.log"
    seen = out.stat().st_size if out.exists() else 0  # a restart appends to the same log
    env = {**os.environ, "DTF_HEARTBEAT_INTERVAL": "0.2", "DTF_HEARTBEAT_MISSES": "5",
           "DTF_DETECT_BROWSER": "0", **(extra_env or {})}
    with open(out, "ab") as log:
        proc = subprocess.Popen(
            [PY, "-m", "cli.main", "up", "--cluster", str(size), "--port", str(base),
             "--workers", str(workers), "--slots", str(slots), "--data-dir", str(data_dir),
             "--no-http"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    cluster = Cluster(data_dir=data_dir, base=base, size=size, proc=proc, out=out)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"dtf up exited {proc.returncode}:\n{out.read_text()}")
        return b"DTF ready at" in out.read_bytes()[seen:]

    try:
        eventually(ready, 90, "dtf up --cluster to become ready")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running(data_dir: Path, **kw: Any) -> Iterator[Cluster]:
    cluster = start(data_dir, **kw)
    try:
        yield cluster
    finally:
        cluster.stop()


async def task_events(log: JetStreamLog) -> list[tuple[int, Event]]:
    return [(r.seq, decode(r.subject, r.data))
            for r in await log.read([subjects.TASK_EVENTS])]


def failover_phases(claims: list[LeadershipClaimed], events: list[Event], old: str,
                    killed_at: float, first_lease: float) -> str:
    """Where a slow failover spent its time: the old claim's life left at the kill, the
    standby's lag past its expiry, the new leader's first round, and when the last task
    the old leader had placed ended (results sent to a killed api wait for a resend)."""
    last_old = max((c for c in claims if c.holder == old), key=lambda c: c.at)
    new = min((c for c in claims if c.holder != old and c.at >= killed_at),
              key=lambda c: c.at, default=None)
    if new is None:
        return "no new claim"
    old_leases = {(e.task_id, e.attempt) for e in events
                  if isinstance(e, TaskLeased) and e.actor == old}
    ends = [e.at for e in events if isinstance(e, AttemptOutcome)
            and (e.task_id, e.attempt) in old_leases]
    return (f"old claim expired {last_old.expires_at - killed_at:.2f}s after the kill; "
            f"new claim {new.at - last_old.expires_at:.2f}s after that; "
            f"first lease {first_lease - new.at:.2f}s after the claim; the old leader's "
            f"last placed task ended {max(ends, default=killed_at) - killed_at:.2f}s after "
            f"the kill")


async def lead_events(log: JetStreamLog, role: str) -> list[LeadershipClaimed]:
    claims = [decode(r.subject, r.data) for r in await log.read([subjects.lead_filter(role)])]
    return [c for c in claims if isinstance(c, LeadershipClaimed)]


@contextlib.contextmanager
def stopped(p: psutil.Process) -> Iterator[None]:
    """SIGSTOP ``p`` for the duration of a ``with`` block (SIGCONT on the way out)."""
    p.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGCONT)
