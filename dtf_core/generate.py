"""Hardware-aware test plans from templates (`dtf generate`): a model's family, a memory
estimate, and a hardware x precision x batch-size DAG of benchmark and test tasks.

Pure: templates and mappings come in (the CLI reads them from a DuckDB file), a plan of
task specs goes out. A template is a task spec in JSON whose strings may hold
``${model_name}``, ``${model_family}``, ``${hardware_type}``, ``${precision}`` and
``${batch_size}``; a string that is exactly one placeholder takes the value's own type
(``"${batch_size}"`` becomes the number 8). Values go into parsed JSON, never into its
text, and every rendered spec is validated as any submitted task is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from dtf_core.errors import InvalidInput
from dtf_core.ids import validate_id
from dtf_core.spec import TaskSpec, parse_specs, validate_spec

Family = Literal["text", "vision", "audio", "multimodal"]
FAMILIES: tuple[Family, ...] = ("text", "vision", "audio", "multimodal")
Kind = Literal["benchmark", "test"]
PRECISIONS = ("fp16", "bf16", "fp32", "fp64", "int8")
GPU_HARDWARE = frozenset({"cuda", "rocm", "mps"})

# Names and config model types, first match wins: multimodal before its parts.
_HINTS: tuple[tuple[Family, tuple[str, ...]], ...] = (
    ("multimodal", ("clip", "blip", "llava", "flava", "layoutlm", "idefics", "vilt", "siglip",
                    "owlvit", "git-", "kosmos", "paligemma", "qwen-vl", "qwen2-vl")),
    ("audio", ("whisper", "wav2vec", "hubert", "speecht5", "encodec", "wavlm", "unispeech",
               "audio", "musicgen", "bark", "clap", "seamless")),
    ("vision", ("vit", "resnet", "convnext", "detr", "yolo", "swin", "deit", "beit",
                "efficientnet", "mobilenet", "segformer", "dino", "regnet", "sam-",
                "mask2former", "dpt", "levit", "poolformer")),
    ("text", ("bert", "gpt", "t5", "llama", "bart", "opt-", "bloom", "mistral", "mixtral",
              "qwen", "phi", "electra", "xlnet", "falcon", "gemma", "pythia", "roberta",
              "deberta", "albert", "mpnet", "marian", "pegasus", "longformer")),
)
# Host memory a run needs, in GB at fp32: a base plus a share per batch element. A rough
# guide for placement (the task's min_memory_gb), not a measurement.
_BASE_GB: Mapping[Family, float] = {"text": 1.0, "vision": 1.0, "audio": 1.5,
                                    "multimodal": 2.5}
_PER_ITEM_GB: Mapping[Family, float] = {"text": 0.05, "vision": 0.08, "audio": 0.1,
                                        "multimodal": 0.15}
_BYTES: Mapping[str, float] = {"fp16": 0.5, "bf16": 0.5, "fp32": 1.0, "fp64": 2.0,
                               "int8": 0.25}
_PLACEHOLDER = re.compile(r"\$\{(model_name|model_family|hardware_type|precision|batch_size)\}")


@dataclass(frozen=True)
class Template:
    template_id: str
    version: int
    family: str  # a family, or "*" for any
    hardware: str  # a hardware type, or "*" for any
    kind: Kind
    content: str  # a task spec in JSON, with placeholders


BUILTIN = Template(
    template_id="builtin-benchmark", version=1, family="*", hardware="*", kind="benchmark",
    content=json.dumps({
        "type": "benchmark", "name": "${model_name} ${hardware_type} ${precision} "
        "batch ${batch_size}",
        "config": {"model": "${model_name}", "batch_sizes": ["${batch_size}"],
                   "precision": "${precision}", "iterations": 10, "warmup": 1}}))


@dataclass(frozen=True)
class Planned:
    task_id: str
    kind: Kind
    hardware: str
    precision: str | None
    batch_size: int | None
    memory_gb: float
    template: str  # template_id@version
    spec: TaskSpec
    depends_on: tuple[str, ...] = field(default=())


def detect_family(model: str, config: Mapping[str, Any] | None = None,
                  mapping: Mapping[str, str] | None = None) -> tuple[Family, str]:
    """The model's family and why; InvalidInput when nothing tells."""
    mapped = (mapping or {}).get(model)
    if mapped in FAMILIES:
        return mapped, "model_mapping"
    if config:
        if "vision_config" in config and "text_config" in config:
            return "multimodal", "config: vision_config and text_config"
        model_type = str(config.get("model_type", "")).lower()
        archs = " ".join(str(a) for a in config.get("architectures") or ()).lower()
        for family, hints in _HINTS:
            hit = next((h for h in hints if h.strip("-") and h.strip("-") in model_type), None)
            if hit:
                return family, f"config model_type {model_type!r}"
        if "num_mel_bins" in config or "audio" in archs:
            return "audio", "config: num_mel_bins"
        if "image_size" in config or "num_channels" in config:
            return "vision", "config: image_size"
    lowered = model.lower().rsplit("/", 1)[-1]
    for family, hints in _HINTS:
        hit = next((h for h in hints if h in lowered), None)
        if hit:
            return family, f"name contains {hit.strip('-')!r}"
    raise InvalidInput(f"cannot tell {model!r}'s family from its name: pass --family "
                       f"({', '.join(FAMILIES)}), --config its config.json, or map it "
                       "(`dtf templates map MODEL FAMILY`)")


def memory_gb(family: Family, precision: str, batch_size: int) -> float:
    scale = _BYTES[precision]
    return round((_BASE_GB[family] + _PER_ITEM_GB[family] * batch_size) * scale, 2)


def render(template: Template, values: Mapping[str, Any]) -> TaskSpec:
    """The template's spec with the values in; validated like a submitted task."""
    try:
        doc = json.loads(template.content)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"template {template.template_id}: not JSON ({exc})") from None

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            if whole:
                return values[whole.group(1)]
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
        if isinstance(node, list):
            return [fill(x) for x in node]
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        return node

    if not isinstance(doc, dict):
        raise InvalidInput(f"template {template.template_id}: a task spec is a JSON object")
    try:
        [spec] = parse_specs(json.dumps(fill(doc)))
    except InvalidInput as exc:
        raise InvalidInput(f"template {template.template_id}@{template.version}: {exc}"
                           ) from None
    return spec


def _pick(templates: Sequence[Template], kind: Kind, family: Family,
          hardware: str) -> Template | None:
    """The most specific template of a kind: this family and hardware over a wildcard."""
    fits = [t for t in templates if t.kind == kind and t.family in (family, "*")
            and t.hardware in (hardware, "*")]
    fits.sort(key=lambda t: (t.family != "*", t.hardware != "*", t.version))
    return fits[-1] if fits else None


def plan(model: str, family: Family, *, hardware: Sequence[str], batch_sizes: Sequence[int],
         precisions: Sequence[str], templates: Sequence[Template], prefix: str
         ) -> list[Planned]:
    """Per hardware: its test task (when a test template fits), then per precision a chain
    of benchmarks by ascending batch size, each after the one before (a size that fails
    would fail larger: they do not run), all after the test. Smaller first by priority."""
    if not hardware or not batch_sizes or not precisions:
        raise InvalidInput("a plan needs at least one hardware type, batch size and precision")
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise InvalidInput(f"unknown precision {bad[0]!r}: one of {', '.join(PRECISIONS)}")
    sizes = sorted(set(batch_sizes))
    if sizes[0] < 1:
        raise InvalidInput("batch sizes are 1 or more")
    validate_id(prefix, "plan prefix")
    out: list[Planned] = []
    for hw in hardware:
        validate_id(hw, "hardware type")
        base = {"model_name": model, "model_family": family, "hardware_type": hw,
                "precision": precisions[0], "batch_size": sizes[0]}
        test = _pick(templates, "test", family, hw)
        test_id = f"{prefix}-{hw}-test"
        after: tuple[str, ...] = ()
        if test is not None:
            spec = _place(render(test, base), hw, memory_gb(family, precisions[0], sizes[0]),
                          test_id, (), len(sizes) + 1)
            out.append(Planned(test_id, "test", hw, None, None, spec.requirements.min_memory_gb,
                               f"{test.template_id}@{test.version}", spec))
            after = (test_id,)
        bench = _pick(templates, "benchmark", family, hw) or BUILTIN
        for precision in precisions:
            previous = after
            for i, size in enumerate(sizes):
                task_id = f"{prefix}-{hw}-{precision}-b{size}"
                need = memory_gb(family, precision, size)
                values = {**base, "precision": precision, "batch_size": size}
                spec = _place(render(bench, values), hw, need, task_id, previous,
                              len(sizes) - i)
                out.append(Planned(task_id, "benchmark", hw, precision, size, need,
                                   f"{bench.template_id}@{bench.version}", spec, previous))
                previous = (task_id,)
    return out


def _place(spec: TaskSpec, hardware: str, need_gb: float, task_id: str,
           after: tuple[str, ...], priority: int) -> TaskSpec:
    req = spec.requirements
    wanted = tuple(dict.fromkeys((*req.hardware, hardware)))
    req = msgspec.structs.replace(
        req, hardware=wanted, min_memory_gb=max(req.min_memory_gb, need_gb),
        gpus=max(req.gpus, 1) if hardware in GPU_HARDWARE else req.gpus)
    return validate_spec(msgspec.structs.replace(
        spec, id=validate_id(task_id, "task id"), requirements=req,
        priority=spec.priority or priority,
        dependencies=tuple(dict.fromkeys((*spec.dependencies, *after)))))
