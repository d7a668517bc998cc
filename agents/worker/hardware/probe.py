"""The probes: each returns what it found and a note when it found nothing or failed.

NVIDIA: NVML through nvidia-ml-py when installed, else `nvidia-smi`. AMD: `rocm-smi`.
Apple: platform and sysctl. Browsers: a headless Chromium, when one is installed, asked
whether WebGPU gives an adapter and whether WebNN exists. Tools run as argv lists with a
timeout; nothing here raises.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from agents.worker.hardware import parse
from dtf_core.events.worker import Gpu

log = logging.getLogger(__name__)
TOOL_TIMEOUT_S = 10.0
BROWSER_TIMEOUT_S = 30.0
BROWSER_TRIES = 3
Runner = Callable[[list[str], float], str]


def run_tool(argv: list[str], timeout: float = TOOL_TIMEOUT_S) -> str:
    """stdout of a tool, or an exception (FileNotFoundError, CalledProcessError, timeout)."""
    return subprocess.run(argv, capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def cpu(read: Callable[[], str] | None = None) -> tuple[str, tuple[str, ...], str | None]:
    """(model, flags, note)."""
    try:
        if read is None and platform.system() == "Darwin":
            brand = run_tool(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
            feats = run_tool(["sysctl", "-n", "machdep.cpu.features"], 5).lower().split() \
                if platform.machine() != "arm64" else ["neon"]
            return brand, tuple(f for f in parse.CPU_FLAGS if f in feats), None
        text = read() if read is not None else Path("/proc/cpuinfo").read_text()
        model, flags = parse.cpuinfo(text)
        return model or platform.processor(), flags, None
    except Exception as exc:  # any failure: no CPU details, say why
        return platform.processor(), (), f"cpu details not detected: {exc}"


def nvidia(run: Runner = run_tool,
           nvml: Callable[[], list[Gpu]] | None = None) -> tuple[list[Gpu], str | None]:
    try:
        return (nvml or _nvml)(), None
    except Exception as nvml_exc:  # no library, no driver, no device: try the tool
        why_nvml = f"NVML: {nvml_exc.__class__.__name__}: {nvml_exc}"
    try:
        out = run(["nvidia-smi", "--query-gpu=name,memory.total,compute_cap,uuid,driver_version",
                   "--format=csv,noheader,nounits"], TOOL_TIMEOUT_S)
        gpus = parse.nvidia_smi_csv(out)
        return gpus, None if gpus else f"no NVIDIA GPU: nvidia-smi listed none ({why_nvml})"
    except FileNotFoundError:
        return [], f"no NVIDIA GPU: nvidia-smi not found ({why_nvml})"
    except Exception as exc:
        return [], f"no NVIDIA GPU: nvidia-smi failed: {exc} ({why_nvml})"


def _nvml() -> list[Gpu]:
    import pynvml  # nvidia-ml-py, optional

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            gpus.append(Gpu(vendor="nvidia", name=name, memory_gb=round(memory / 1024**3, 2),
                            compute=float(f"{major}.{minor}"), uuid=uuid, driver=driver))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def amd(run: Runner = run_tool) -> tuple[list[Gpu], str | None]:
    try:
        out = run(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"],
                  TOOL_TIMEOUT_S)
        gpus = parse.rocm_smi_json(out)
        return gpus, None if gpus else "no AMD GPU: rocm-smi listed none"
    except FileNotFoundError:
        return [], "no AMD GPU: rocm-smi not found"
    except Exception as exc:
        return [], f"no AMD GPU: rocm-smi failed: {exc}"


def apple(run: Runner = run_tool) -> tuple[list[Gpu], str | None]:
    if platform.system() != "Darwin":
        return [], None
    try:
        chip = parse.apple_chip(run(["sysctl", "-n", "machdep.cpu.brand_string"], 5),
                                platform.machine())
    except Exception as exc:
        return [], f"Apple silicon not detected: {exc}"
    if chip is None:
        return [], "not Apple silicon"
    return [Gpu(vendor="apple", name=chip)], None


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# A file:// page (a secure context: navigator.gpu exists only in one; a data: URL is not).
# A fallback (software) adapter such as SwiftShader is no GPU: not advertised, said why.
PROBE_PAGE = (
    "<!doctype html><title>dtf</title><script>(async()=>{let g='no',why='';try{"
    "if(!navigator.gpu){why='navigator.gpu is absent (WebGPU disabled in this browser)'}"
    "else{const a=await navigator.gpu.requestAdapter();"
    "if(!a){why='requestAdapter() returned null: no usable GPU adapter'}else{"
    "const i=a.info||{};const n=[i.vendor,i.architecture,i.device,i.description]"
    ".filter(Boolean).join(' ')||'unnamed';"
    "if(i.isFallbackAdapter||a.isFallbackAdapter){why='only a fallback (software) adapter: '+n}"
    "else{g='yes';why='adapter: '+n}}}}catch(e){why='requestAdapter() failed: '+e}"
    "document.title='dtf-webgpu-'+g+'-webnn-'+('ml' in navigator?'yes':'no');"
    "document.body.textContent=document.title+' dtf-why: '+why+' :dtf-end'})()</script>"
)


def browser(run: Runner = run_tool) -> tuple[list[str], str | None]:
    """Hardware names a headless Chromium offers: "browser" (it runs pages), "webgpu" (a
    GPU adapter), "webnn"; and a note: why WebGPU is absent, or its adapter."""
    binary = next((b for b in (shutil.which(n) for n in BROWSERS) if b), None)
    if binary is None:
        return [], "no headless browser: no Chromium or Chrome found"
    for _ in range(BROWSER_TRIES):  # a loaded host may dump the page before it has run
        try:
            with tempfile.TemporaryDirectory(prefix="dtf-probe-") as tmp:
                page = Path(tmp) / "probe.html"
                page.write_text(PROBE_PAGE)
                out = run([binary, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                           "--enable-unsafe-webgpu",
                           "--enable-features=WebMachineLearningNeuralNetwork",
                           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          BROWSER_TIMEOUT_S)
        except Exception as exc:
            return [], f"browser probe failed: {exc}"
        found = parse.browser_dom(out)
        if found:
            return found, parse.browser_why(out)
    return [], f"browser probe: {binary} did not run the probe page ({BROWSER_TRIES} tries)"
