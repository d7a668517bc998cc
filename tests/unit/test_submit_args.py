"""`dtf submit` flags become the task's requirements, and bad values are refused."""

from __future__ import annotations

import pytest

from cli.args import parser, specs_from_args
from dtf_core.errors import InvalidInput


def _specs(*flags: str) -> list:  # type: ignore[type-arg]
    args = parser().parse_args(["submit", *flags])
    return specs_from_args(args, ["nvidia-smi", "-L"])


def test_hardware_flags_become_requirements() -> None:
    spec, = _specs("--requires", "cuda", "--gpus", "2", "--min-cuda-compute", "8.0",
                   "--group", "lab", "--min-memory-gb", "16")
    req = spec.requirements
    assert (req.hardware, req.gpus, req.min_cuda_compute, req.worker_group,
            req.min_memory_gb) == (("cuda",), 2, 8.0, "lab", 16.0)
    assert _specs()[0].requirements.gpus == 0


def test_bad_gpu_count_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="gpus"):
        _specs("--gpus", "-1")


@pytest.mark.parametrize("flags", [["--heartbeat-interval", "0"], ["--heartbeat-misses", "0"],
                                   ["--cluster", "2"]])
def test_dtf_up_refuses_bad_settings_before_starting_anything(
        flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    assert main(["up", *flags]) == 2
    assert "dtf: error:" in capsys.readouterr().err
