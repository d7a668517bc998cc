"""Pinning tasks to the GPUs they reserved."""

from __future__ import annotations

import pytest

from agents.worker.gpu_slots import GpuSlots
from dtf_core.errors import DTFError
from dtf_core.events.worker import Gpu

H100 = Gpu(vendor="nvidia", name="NVIDIA H100", memory_gb=79.65, compute=9.0)


def test_tasks_get_distinct_gpus_by_uuid_and_give_them_back() -> None:
    slots = GpuSlots([Gpu(vendor="nvidia", name="x", uuid="GPU-a"),
                      Gpu(vendor="nvidia", name="x", uuid="GPU-b")])
    first = slots.take("t1/1", 1)
    assert first["CUDA_VISIBLE_DEVICES"] == "GPU-a" and first["DTF_GPUS"] == "0"
    assert slots.take("t2/1", 1)["CUDA_VISIBLE_DEVICES"] == "GPU-b"
    with pytest.raises(DTFError, match="reserves 1 GPU"):
        slots.take("t3/1", 1)
    slots.give_back("t1/1")
    assert slots.take("t3/1", 1)["CUDA_VISIBLE_DEVICES"] == "GPU-a"


def test_no_reservation_no_pinning_and_numbers_without_uuids() -> None:
    slots = GpuSlots([H100, H100])  # identical cards, no UUIDs (an old nvidia-smi)
    assert slots.take("t1/1", 0) == {}
    env = slots.take("t2/1", 2)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_amd_and_mixed_vendors_count_per_vendor() -> None:
    mi = Gpu(vendor="amd", name="MI210", arch="gfx90a")
    slots = GpuSlots([H100, mi, mi])
    assert slots.take("a/1", 1)["CUDA_VISIBLE_DEVICES"] == "0"
    env = slots.take("b/1", 2)
    assert env["ROCR_VISIBLE_DEVICES"] == env["HIP_VISIBLE_DEVICES"] == "0,1"
    assert "CUDA_VISIBLE_DEVICES" not in env
