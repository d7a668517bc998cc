"""Which of a worker's GPUs each running task may use.

A task that reserves ``gpus=N`` gets N GPUs of the worker no other running task holds, and
sees only those: ``CUDA_VISIBLE_DEVICES`` (by UUID, so the numbering CUDA picks cannot
disagree with ours) for NVIDIA, ``ROCR_VISIBLE_DEVICES`` and ``HIP_VISIBLE_DEVICES`` for AMD.
A task that reserves none is left alone. Placement and the worker's overcommit check keep
the reservations within what the worker has, so ``take`` failing means a bug, said plainly.
"""

from __future__ import annotations

from collections.abc import Sequence

from dtf_core.errors import DTFError
from dtf_core.events.worker import Gpu


class GpuSlots:
    def __init__(self, gpus: Sequence[Gpu]) -> None:
        self.gpus = list(gpus)  # Apple's one GPU is counted but has nothing to pin
        self.holders: dict[int, str] = {}  # position in self.gpus -> holder

    def take(self, holder: str, n: int) -> dict[str, str]:
        """Reserve ``n`` free GPUs for ``holder`` (an attempt); the environment that pins it."""
        if n <= 0:
            return {}
        free = [i for i in range(len(self.gpus)) if i not in self.holders]
        if len(free) < n:
            raise DTFError(f"the task reserves {n} GPU(s) but this worker has {len(free)} "
                           f"free of {len(self.gpus)}")
        chosen = free[:n]
        for i in chosen:
            self.holders[i] = holder
        return visible_env([(i, self.gpus[i]) for i in chosen], self.gpus)

    def give_back(self, holder: str) -> None:
        for i in [i for i, t in self.holders.items() if t == holder]:
            del self.holders[i]


def visible_env(chosen: Sequence[tuple[int, Gpu]], all_gpus: Sequence[Gpu]) -> dict[str, str]:
    """``chosen``: (position in ``all_gpus``, gpu) pairs."""

    def vendor_index(i: int) -> str:  # the GPU's number among its vendor's, as tools count
        return str(sum(1 for g in all_gpus[:i] if g.vendor == all_gpus[i].vendor))

    env: dict[str, str] = {}
    nvidia = [g.uuid or vendor_index(i) for i, g in chosen if g.vendor == "nvidia"]
    if nvidia:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(nvidia)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # numbers, when used, match nvidia-smi's
    amd = [vendor_index(i) for i, g in chosen if g.vendor == "amd"]
    if amd:
        env["ROCR_VISIBLE_DEVICES"] = env["HIP_VISIBLE_DEVICES"] = ",".join(amd)
    env["DTF_GPUS"] = ",".join(str(i) for i, _ in chosen)
    return env
