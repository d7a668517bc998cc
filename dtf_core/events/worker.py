"""Events of the worker aggregate. Subjects: ``dtf.evt.worker.<worker_id>.<type>``."""

from __future__ import annotations

import hashlib
from typing import Literal

from msgspec import Struct


class Gpu(Struct, frozen=True, kw_only=True):
    vendor: str  # nvidia, amd, apple
    name: str
    memory_gb: float = 0.0
    compute: float | None = None  # CUDA compute capability (nvidia)
    arch: str = ""  # gfx target (amd)
    uuid: str = ""  # "GPU-…" (nvidia): what CUDA_VISIBLE_DEVICES pins a task to
    driver: str = ""  # the driver's version (nvidia)


class Unsupported(Struct, frozen=True, kw_only=True):
    """A task type this worker does not run, and why (a Windows worker: ``test``)."""

    task_type: str
    reason: str


class Capabilities(Struct, frozen=True, kw_only=True):
    cpu_count: int = 0
    memory_gb: float = 0.0
    disk_gb: float = 0.0
    platform: str = ""
    machine: str = ""
    python: str = ""
    hardware: tuple[str, ...] = ("cpu",)
    cuda_compute: float | None = None
    tags: tuple[str, ...] = ()
    cpu_model: str = ""
    cpu_flags: tuple[str, ...] = ()
    os_release: str = ""
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = ()  # what was not detected, and why
    group: str = ""  # the named pool it serves (`dtf worker --group`)
    # Task types it does not run (placement gives it none; `dtf explain` says why).
    unsupported: tuple[Unsupported, ...] = ()

    def refuses(self, task_type: str) -> str | None:
        """Why this worker does not run tasks of ``task_type``, or None if it does."""
        for u in self.unsupported:
            if u.task_type == task_type:
                return u.reason
        return None

    @property
    def fingerprint(self) -> str:
        """The hardware, hashed: CPU model and flags, GPU models and the driver. Hosts with
        equal fingerprints give comparable benchmark numbers."""
        parts = [self.machine, self.cpu_model, " ".join(sorted(self.cpu_flags)),
                 *sorted(f"{g.vendor}:{g.name}:{g.driver}" for g in self.gpus)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class WorkerEventBase(Struct, frozen=True, kw_only=True, tag_field="type"):
    worker_id: str
    at: float
    actor: str


class WorkerRegistered(WorkerEventBase, frozen=True, kw_only=True, tag="registered"):
    """A worker process came up; ``session`` names this incarnation of the worker id."""

    session: str
    hostname: str
    pid: int
    slots: int
    capabilities: Capabilities
    signing_key: bytes | None = None
    heartbeat_interval: float | None = None  # seconds between its heartbeats; None: not said


class WorkerStopped(WorkerEventBase, frozen=True, kw_only=True, tag="stopped"):
    session: str
    reason: str = "shutdown"


class WorkerLost(WorkerEventBase, frozen=True, kw_only=True, tag="lost"):
    session: str
    reason: str
    last_seen: float


SchedulingMode = Literal["open", "cordoned", "draining"]


class WorkerSchedulingChanged(WorkerEventBase, frozen=True, kw_only=True, tag="scheduling"):
    """`dtf worker cordon|drain|uncordon`: whether new leases may go to this worker. It
    outlives the worker's sessions (a cordoned worker that restarts stays cordoned)."""

    mode: SchedulingMode
    reason: str = ""


class WorkerCapabilitiesChanged(WorkerEventBase, frozen=True, kw_only=True,
                                tag="capabilities"):
    """What a worker found after registering (the features of a headless browser, whose
    launch is too slow to hold up the worker's start), for its session."""

    session: str
    capabilities: Capabilities


WorkerEvent = (WorkerRegistered | WorkerStopped | WorkerLost | WorkerSchedulingChanged
               | WorkerCapabilitiesChanged)
