"""What this host offers, detected for real (psutil, platform, /proc, NVML or nvidia-smi,
rocm-smi, sysctl, a headless Chromium). Never raises: what is not found is absent, and
``notes`` says why."""

from __future__ import annotations

import logging
import platform
import sys

import msgspec
import psutil

from agents.proc.plan import Platform, platform_of, unsupported_tasks
from agents.worker.hardware import probe
from dtf_core.events.worker import Capabilities, Gpu, Unsupported

log = logging.getLogger(__name__)
PLATFORM = platform_of()


def unsupported(platform: Platform = PLATFORM) -> tuple[Unsupported, ...]:
    """The task types a worker here does not run, with why (``plan.unsupported_tasks``)."""
    return tuple(Unsupported(task_type=t, reason=why) for t, why in unsupported_tasks(platform))


def _os_release() -> str:
    try:
        if platform.system() == "Linux":
            info = platform.freedesktop_os_release()
            return info.get("PRETTY_NAME") or info.get("NAME", "")
        return f"{platform.system()} {platform.release()}"
    except OSError:
        return f"{platform.system()} {platform.release()}"


def detect(tags: tuple[str, ...] = (), disk_path: str = ".", *, gpus: bool = True,
           browsers: bool = True) -> Capabilities:
    notes: list[str] = []
    try:
        disk_gb = psutil.disk_usage(disk_path).free / 1024**3
    except OSError as exc:
        notes.append(f"disk space not detected: {exc}")
        disk_gb = 0.0
    model, flags, note = probe.cpu()
    hardware = ["cpu"]
    found: list[Gpu] = []
    probes = (probe.nvidia, probe.amd, probe.apple) if gpus else ()
    for find in probes:
        try:
            more, note_gpu = find()
        except Exception as exc:  # a probe bug must not stop the worker
            more, note_gpu = [], f"{find.__name__} probe crashed: {exc!r}"
        found += more
        if note_gpu:
            notes.append(note_gpu)
    if note:
        notes.append(note)
    vendors = {g.vendor for g in found}
    hardware += [h for v, h in (("nvidia", "cuda"), ("amd", "rocm"), ("apple", "mps"))
                 if v in vendors]
    if browsers:
        web, note_web = probe.browser()
        hardware += web
        if note_web:
            notes.append(note_web)
    computes = [g.compute for g in found if g.compute is not None]
    for n in notes:
        log.info("capabilities: %s", n)
    refused = unsupported()
    for u in refused:
        log.warning("this worker runs no %s tasks: %s", u.task_type, u.reason)
    return Capabilities(
        cpu_count=psutil.cpu_count(logical=True) or 1,
        memory_gb=round(psutil.virtual_memory().total / 1024**3, 2),
        disk_gb=round(disk_gb, 2),
        platform=platform.system().lower(),
        machine=platform.machine(),
        python=platform.python_version(),
        hardware=tuple(hardware),
        cuda_compute=max(computes) if computes else None,
        tags=tuple(tags),
        cpu_model=model,
        cpu_flags=flags,
        os_release=_os_release(),
        gpus=tuple(found),
        notes=tuple(notes),
        unsupported=refused,
    )


def python_executable() -> str:
    return sys.executable


def with_browsers(caps: Capabilities) -> tuple[Capabilities, list[str]]:
    """``caps`` with what a headless browser offers here ("browser", "webgpu", "webnn")
    and the probe's note (why WebGPU is absent, or its adapter), and the names it added.
    Launches the browser: call it off the loop."""
    web, note = probe.browser()
    if note:
        log.info("capabilities: %s", note)
    added = [w for w in web if w not in caps.hardware]
    notes = (*caps.notes, note) if note and note not in caps.notes else caps.notes
    return msgspec.structs.replace(caps, hardware=(*caps.hardware, *added), notes=notes), added
