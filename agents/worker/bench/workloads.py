"""The built-in workloads, and loading a user's callable. Each gives, for a batch size and
a precision, a function that runs one iteration and returns extra metrics (or nothing).

Runs in the harness's process, never in the worker's.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

Iteration = Callable[[], dict[str, float] | None]
MATRIX_N = 128  # GEMM size of the matmul workloads: batch x (N x N) @ (N x N)
DISK_BLOCK = 1024 * 1024  # disk-io writes and reads this much per batch item


class WorkloadError(Exception):
    """The workload cannot run here (a missing package, a precision it lacks)."""


def numpy_matmul(batch: int, precision: str) -> Iteration:
    import numpy as np

    dtypes = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8}
    if precision not in dtypes:
        raise WorkloadError(f"numpy-matmul has no {precision}: use fp16, fp32, fp64 or int8 "
                            "(bf16 needs torch-matmul)")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, MATRIX_N, MATRIX_N)).astype(dtypes[precision])
    b = rng.standard_normal((batch, MATRIX_N, MATRIX_N)).astype(dtypes[precision])
    flops = 2.0 * MATRIX_N**3 * batch

    def run() -> dict[str, float]:
        np.matmul(a, b)
        return {"flop": flops}

    return run


def torch_matmul(batch: int, precision: str) -> Iteration:
    try:
        import torch
    except ImportError:
        raise WorkloadError("torch-matmul needs torch, which is not installed here") from None
    if not torch.cuda.is_available():
        raise WorkloadError("torch-matmul needs a CUDA GPU: torch sees none "
                            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
              "fp64": torch.float64}
    if precision not in dtypes:
        raise WorkloadError(f"torch-matmul has no {precision}: use fp16, bf16, fp32 or fp64")
    a = torch.randn(batch, MATRIX_N, MATRIX_N, dtype=dtypes[precision], device="cuda")
    b = torch.randn(batch, MATRIX_N, MATRIX_N, dtype=dtypes[precision], device="cuda")
    flops = 2.0 * MATRIX_N**3 * batch

    def run() -> dict[str, float]:
        torch.bmm(a, b)
        torch.cuda.synchronize()  # the time is the GPU's work, not the launch
        return {"flop": flops}

    return run


def python_startup(batch: int, precision: str) -> Iteration:
    argv = [sys.executable, "-c", "pass"]

    def run() -> None:
        for _ in range(batch):
            subprocess.run(argv, check=True)

    return run


def disk_io(batch: int, precision: str) -> Iteration:
    block = os.urandom(DISK_BLOCK)
    where = tempfile.mkdtemp(prefix="dtf-disk-io-")
    atexit.register(shutil.rmtree, where, True)  # the harness's process ends with the run

    def run() -> dict[str, float]:
        path = os.path.join(where, "data")
        with open(path, "wb") as f:
            for _ in range(batch):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        with open(path, "rb") as f:
            while f.read(DISK_BLOCK):
                pass
        os.unlink(path)
        return {"bytes": 2.0 * DISK_BLOCK * batch}

    return run


BUILTIN: dict[str, Callable[[int, str], Iteration]] = {
    "numpy-matmul": numpy_matmul,
    "torch-matmul": torch_matmul,
    "python-startup": python_startup,
    "disk-io": disk_io,
}


def default_workload(on_gpu: bool) -> str:
    """With no workload named: torch-matmul where the task is for a GPU (it requires cuda
    or reserves GPUs) and torch is installed, else numpy-matmul (the result names it)."""
    if on_gpu:
        try:
            importlib.import_module("torch")
            return "torch-matmul"
        except ImportError:
            pass
    return "numpy-matmul"


def user_callable(target: str, batch: int, precision: str) -> Iteration:
    """``pkg.module:function``, called with (batch_size, precision) once per iteration; a
    dict it returns holds extra metrics (numbers)."""
    module_name, _, attr = target.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the task's directory, as `python -m` would
    try:
        fn: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise WorkloadError(f"cannot load {target}: {exc}") from None
    if not callable(fn):
        raise WorkloadError(f"{target} is not callable")

    def run() -> dict[str, float] | None:
        out = fn(batch, precision)
        return out if isinstance(out, dict) else None

    return run
