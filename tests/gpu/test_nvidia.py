"""NVIDIA detection and GPU pinning on a real GPU. Skipped where no NVIDIA driver is
installed (CI); run on a GPU host with ``pytest -m gpu``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from agents.worker.capabilities import detect
from agents.worker.hardware import parse, probe
from dtf_core.spec import Requirements, TaskSpec
from dtf_core.task import TERMINAL
from tests.integration.harness import stack

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(shutil.which("nvidia-smi") is None,
                       reason="no NVIDIA GPU here: nvidia-smi not found"),
]

# Counts the devices CUDA shows this process through the driver API (no framework needed)
# and checks that the one it sees is the one DTF pinned the task to.
CUDA_CHECK = """
import ctypes, os, sys
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
n = ctypes.c_int()
assert cuda.cuDeviceGetCount(ctypes.byref(n)) == 0
want = os.environ["CUDA_VISIBLE_DEVICES"]
print("visible", want, "count", n.value, "dtf", os.environ.get("DTF_GPUS"))
sys.exit(0 if n.value == len(want.split(",")) else 3)
"""


def _smi() -> str:
    return probe.run_tool(["nvidia-smi",
                           "--query-gpu=name,memory.total,compute_cap,uuid,driver_version",
                           "--format=csv,noheader,nounits"])


def test_nvml_and_nvidia_smi_agree() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install .[gpu])")
    via_nvml, via_smi = probe._nvml(), parse.nvidia_smi_csv(_smi())
    assert via_nvml, "NVML listed no GPU although nvidia-smi exists"
    assert [(g.name, g.uuid, g.compute, g.driver) for g in via_nvml] == \
        [(g.name, g.uuid, g.compute, g.driver) for g in via_smi]
    assert all(g.driver for g in via_smi), "nvidia-smi gave no driver version"
    for a, b in zip(via_nvml, via_smi, strict=True):
        assert abs(a.memory_gb - b.memory_gb) < 1.0, (a, b)  # NVML counts bytes, smi MiB


def test_detect_offers_cuda_with_every_gpu() -> None:
    caps = detect(browsers=False)
    smi = parse.nvidia_smi_csv(_smi())
    assert "cuda" in caps.hardware
    assert [g.uuid for g in caps.gpus if g.vendor == "nvidia"] == [g.uuid for g in smi]
    assert all(g.uuid.startswith(("GPU-", "MIG-")) and g.memory_gb > 1 for g in caps.gpus)
    assert caps.cuda_compute == max(g.compute or 0 for g in smi)
    assert not [n for n in caps.notes if "NVIDIA" in n], caps.notes


@pytest.mark.anyio
async def test_a_cuda_task_is_placed_and_sees_only_its_gpu(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=1, slots=2) as h:
        gpus = h.agents["worker:w1"].capabilities.gpus
        cc = max(g.compute or 0 for g in gpus)
        pinned = TaskSpec(type="command", config={"argv": [sys.executable, "-c", CUDA_CHECK]},
                          requirements=Requirements(hardware=("cuda",), gpus=1,
                                                    min_cuda_compute=cc))
        too_new = TaskSpec(type="noop", requirements=Requirements(min_cuda_compute=cc + 50))
        too_many = TaskSpec(type="noop", requirements=Requirements(gpus=len(gpus) + 1))
        ok, new, many = (await h.api.submit([pinned, too_new, too_many])).ids
        row = await h.wait_status(ok, TERMINAL, timeout=60)
        assert row.status == "succeeded", row
        for task_id, why in ((new, "CUDA compute"), (many, "GPU")):
            lines = (await h.api.explain(task_id)).lines
            assert "No live worker meets its requirements:" in lines, lines
            assert any(why in ln for ln in lines), lines


@pytest.mark.anyio
async def test_the_seeds_benchmark_runs_torch_matmul_on_the_gpu(tmp_path: Path) -> None:
    """The older system's benchmark JSON as written, on a CUDA worker: torch-matmul at fp16
    on the GPU (where torch with CUDA is installed), recorded as cuda with the driver."""
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    import json

    from dtf_core.events.task import TaskSucceeded
    from dtf_core.spec import parse_specs
    from tests.helpers import SEED_BENCHMARK

    seed = {**SEED_BENCHMARK, "config": {**SEED_BENCHMARK["config"], "iterations": 20}}
    async with stack(tmp_path, workers=1, slots=2) as h:
        [task_id] = (await h.api.submit(parse_specs(json.dumps(seed)))).ids
        assert (await h.wait_status(task_id, TERMINAL, 300)).status == "succeeded"
        outcome = next(e for _, e in await h.events(task_id) if isinstance(e, TaskSucceeded))
        result = outcome.benchmark
        assert result is not None
        assert (result.workload, result.device.split(":")[0], result.hardware_type) == (
            "torch-matmul", "cuda", "cuda")
        assert [b.batch_size for b in result.batches] == [1, 2, 4, 8, 16]
        assert all(b.metrics["flop"] > 0 and b.wall_s.n == 20 for b in result.batches)
        assert result.provenance.gpus and "driver" in result.provenance.gpus[0]
        assert "torch" in result.provenance.packages
