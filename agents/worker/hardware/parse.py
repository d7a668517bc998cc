"""Pure parsers of what the probes read (/proc/cpuinfo, nvidia-smi, rocm-smi, sysctl)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from dtf_core.events.worker import Gpu

# CPU flags worth matching on (the rest of /proc/cpuinfo's long list is noise).
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_bf16", "neon", "asimd", "sve", "sve2")


def cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(model, flags) from Linux /proc/cpuinfo, x86 ("model name", "flags") or ARM
    ("Features"; "neon" is reported as "asimd" on aarch64)."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    if "asimd" in flags:
        flags.add("neon")
    return model, tuple(f for f in CPU_FLAGS if f in flags)


def nvidia_smi_csv(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=name,memory.total,compute_cap,uuid,driver_version
    --format=csv,noheader,nounits`;
    older drivers print "[N/A]" or "[Not Supported]" for compute_cap."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0]:
            continue
        try:
            memory_gb = round(float(parts[1]) / 1024, 2)  # MiB
        except ValueError:
            memory_gb = 0.0
        compute = None
        if len(parts) > 2:
            try:
                compute = float(parts[2])
            except ValueError:
                compute = None
        uuid = parts[3] if len(parts) > 3 and parts[3].startswith(("GPU-", "MIG-")) else ""
        driver = parts[4] if len(parts) > 4 and parts[4][:1].isdigit() else ""
        gpus.append(Gpu(vendor="nvidia", name=parts[0], memory_gb=memory_gb, compute=compute,
                        uuid=uuid, driver=driver))
    return gpus


def rocm_smi_json(text: str) -> list[Gpu]:
    """`rocm-smi --showproductname --showmeminfo vram --json`: one object per card."""
    data: dict[str, Any] = json.loads(text)
    gpus = []
    for card, info in sorted(data.items()):
        if not card.lower().startswith("card") or not isinstance(info, dict):
            continue
        name = (info.get("Card Series") or info.get("Card series") or info.get("Card model")
                or info.get("Device Name") or card)
        total = info.get("VRAM Total Memory (B)")
        try:
            memory_gb = round(int(total) / 1024**3, 2) if total is not None else 0.0
        except (TypeError, ValueError):
            memory_gb = 0.0
        arch = info.get("GFX Version") or info.get("gfx_version") or ""
        gpus.append(Gpu(vendor="amd", name=str(name), memory_gb=memory_gb,
                        arch=str(arch)))
    return gpus


def apple_chip(brand: str, machine: str) -> str | None:
    """The Apple silicon chip from `sysctl -n machdep.cpu.brand_string` ("Apple M2 Pro")."""
    if machine != "arm64" or not brand.startswith("Apple"):
        return None
    return brand.strip()


def browser_dom(dom: str) -> list[str]:
    """The probe page writes 'dtf-webgpu-yes|no-webnn-yes|no' into the dumped DOM: a
    browser that ran it is a "browser" (it runs browser tasks)."""
    if not re.search(r"dtf-webgpu-(yes|no)-webnn-(yes|no)", dom):  # not the script's text
        return []
    found = ["browser"]
    if "dtf-webgpu-yes" in dom:
        found.append("webgpu")
    if "-webnn-yes" in dom:
        found.append("webnn")
    return found


def browser_why(dom: str) -> str | None:
    """The probe's word on WebGPU: why it is absent, or the adapter it found."""
    said = [m for m in re.findall(r"dtf-why: (.*?) :dtf-end", dom, re.S) if "+why+" not in m]
    return f"WebGPU: {html.unescape(said[-1]).strip()[:300]}" if said else None
