"""The detection parsers on captured tool output, and probes that fail in every way."""

from __future__ import annotations

import subprocess

import msgspec
import pytest

from agents.worker.hardware import parse, probe
from dtf_core.events.worker import Capabilities, Gpu

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve sve2
CPU implementer\t: 0x41
"""
# nvidia-smi --query-gpu=name,memory.total,compute_cap,uuid --format=csv,noheader,nounits
NVIDIA_SMI = """NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-5f2c8a51-0d6b-4c1e-9f3a-2b7e6d1c0a11
NVIDIA H100 80GB HBM3, 81559, 9.0, GPU-5f2c8a51-0d6b-4c1e-9f3a-2b7e6d1c0a11
"""
# Captured on a real H200 host (2026-11-27), the same query.
NVIDIA_SMI_H200 = "NVIDIA H200, 143771, 9.0, GPU-4414616b-870e-7996-cfd6-53e7710533e7\n"
NVIDIA_SMI_OLD = "Tesla K80, 11441, [N/A]\n"
# with the driver's version (the query DTF makes now: ...,uuid,driver_version)
NVIDIA_SMI_DRIVER = ("NVIDIA H200, 143771, 9.0, GPU-4414616b-870e-7996-cfd6-53e7710533e7,"
                     " 570.86.15\n")
# rocm-smi --showproductname --showmeminfo vram --json
ROCM_SMI = """{"card0": {"Card series": "Instinct MI210", "Card model": "0x0c34",
 "Card vendor": "Advanced Micro Devices, Inc. [AMD/ATI]", "GFX Version": "gfx90a",
 "VRAM Total Memory (B)": "68702699520", "VRAM Total Used Memory (B)": "10960896"},
 "system": {"Driver version": "6.7.0"}}"""


def test_cpuinfo_x86_and_arm() -> None:
    model, flags = parse.cpuinfo(X86_CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
                     "avx512_bf16", "amx_tile")
    assert parse.cpuinfo(ARM_CPUINFO)[1] == ("neon", "asimd", "sve", "sve2")


def test_nvidia_smi() -> None:
    assert parse.nvidia_smi_csv(NVIDIA_SMI) == [
        Gpu(vendor="nvidia", name="NVIDIA H100 80GB HBM3", memory_gb=79.65, compute=9.0,
            uuid="GPU-5f2c8a51-0d6b-4c1e-9f3a-2b7e6d1c0a11")] * 2
    assert parse.nvidia_smi_csv(NVIDIA_SMI_OLD) == [
        Gpu(vendor="nvidia", name="Tesla K80", memory_gb=11.17, compute=None)]
    assert parse.nvidia_smi_csv("") == []
    assert parse.nvidia_smi_csv(NVIDIA_SMI_H200) == [
        Gpu(vendor="nvidia", name="NVIDIA H200", memory_gb=140.4, compute=9.0,
            uuid="GPU-4414616b-870e-7996-cfd6-53e7710533e7")]


def test_nvidia_smi_driver_goes_into_the_fingerprint() -> None:
    [gpu] = parse.nvidia_smi_csv(NVIDIA_SMI_DRIVER)
    assert gpu.driver == "570.86.15"
    caps = Capabilities(cpu_model="x", gpus=(gpu,))
    other_driver = Capabilities(cpu_model="x", gpus=(msgspec.structs.replace(gpu, driver="1"),))
    assert caps.fingerprint != other_driver.fingerprint
    assert caps.fingerprint == Capabilities(cpu_model="x", gpus=(gpu,), tags=("t",)).fingerprint


def test_rocm_smi() -> None:
    assert parse.rocm_smi_json(ROCM_SMI) == [
        Gpu(vendor="amd", name="Instinct MI210", memory_gb=63.98, arch="gfx90a")]


def test_apple_and_browser() -> None:
    assert parse.apple_chip("Apple M2 Pro", "arm64") == "Apple M2 Pro"
    assert parse.apple_chip("Intel(R) Core(TM) i9", "x86_64") is None
    assert parse.browser_dom("<html><body>dtf-webgpu-yes-webnn-no</body>") == [
        "browser", "webgpu"]
    assert parse.browser_dom("<body>dtf-webgpu-no-webnn-yes</body>") == ["browser", "webnn"]
    assert parse.browser_dom("<body></body>") == []
    dom = ("<body>dtf-webgpu-no-webnn-yes dtf-why: only a fallback (software) adapter: "
           "google swiftshader :dtf-end</body>")
    assert parse.browser_why(dom) == ("WebGPU: only a fallback (software) adapter: "
                                      "google swiftshader")
    assert parse.browser_why("<body>dtf-webgpu-no-webnn-no</body>") is None


def no_nvml() -> list[Gpu]:  # as on a host without the library (a GPU host has it)
    raise ImportError("No module named 'pynvml'")


def runner(result: str | BaseException) -> probe.Runner:
    def run(argv: list[str], timeout: float) -> str:
        if isinstance(result, BaseException):
            raise result
        return result
    return run


@pytest.mark.parametrize("failure", [
    FileNotFoundError("nvidia-smi"),
    subprocess.CalledProcessError(9, ["nvidia-smi"], stderr="NVIDIA-SMI has failed"),
    subprocess.TimeoutExpired(["nvidia-smi"], 10),
    PermissionError("denied"),
])
def test_a_failing_tool_is_a_note_never_a_crash(failure: BaseException) -> None:
    gpus, note = probe.nvidia(runner(failure), no_nvml)
    assert gpus == [] and note is not None and note.startswith("no NVIDIA GPU")
    gpus, note = probe.amd(runner(failure))
    assert gpus == [] and note is not None and note.startswith("no AMD GPU")


def test_tools_that_answer() -> None:
    gpus, note = probe.nvidia(runner(NVIDIA_SMI), no_nvml)
    assert len(gpus) == 2 and note is None
    gpus, note = probe.nvidia(runner(""), no_nvml)
    assert gpus == [] and note is not None and "No module named 'pynvml'" in note
    assert probe.amd(runner(ROCM_SMI))[0][0].name == "Instinct MI210"
    assert probe.nvidia(runner("garbage without commas"), no_nvml)[0] == []


def test_cpu_probe_survives_a_bad_read() -> None:
    def broken() -> str:
        raise OSError("no /proc")
    _, flags, note = probe.cpu(broken)
    assert flags == () and note is not None and "no /proc" in note
    assert probe.cpu(lambda: X86_CPUINFO)[0] == "Intel(R) Xeon(R) Platinum 8480+"


def test_detect_on_this_host_is_real_and_complete() -> None:
    from agents.worker.capabilities import detect

    caps = detect(("lab2",))
    assert caps.cpu_count >= 1 and caps.memory_gb > 0 and "cpu" in caps.hardware
    assert caps.tags == ("lab2",)
    if not caps.gpus:  # this host has none: the reason is recorded, not silence
        assert any("NVIDIA" in n for n in caps.notes)


def test_cpu_flags_match_hardware_requirements() -> None:
    from dtf_core.events.worker import Capabilities
    from dtf_core.placement import mismatch
    from dtf_core.spec import Requirements

    caps = Capabilities(cpu_flags=("avx2",), tags=("lab2",))
    assert mismatch(Requirements(hardware=("avx2", "lab2")), caps) is None
    assert mismatch(Requirements(hardware=("avx512f",)), caps) == "lacks hardware avx512f"


def test_a_browser_probe_dumped_before_its_page_ran_is_tried_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded host's Chromium may dump the page before its script ran: tried again (the
    worker would otherwise never offer "browser"), and said after the last try."""
    monkeypatch.setattr(probe.shutil, "which", lambda name: "/usr/bin/chromium")
    dumps = iter(["<body></body>", "<body>dtf-webgpu-no-webnn-yes</body>"])
    assert probe.browser(lambda argv, timeout: next(dumps))[0] == ["browser", "webnn"]
    calls = []

    def never(argv: list[str], timeout: float) -> str:
        calls.append(argv)
        return "<body></body>"

    found, note = probe.browser(never)
    assert found == [] and len(calls) == probe.BROWSER_TRIES and "did not run" in str(note)
