"""`dtf generate`'s pure core (dtf_core/generate.py): a model's family, memory estimates,
templates rendered into validated specs, and the hardware x precision x batch-size DAG."""

from __future__ import annotations

import json

import pytest

from dtf_core.errors import InvalidInput
from dtf_core.generate import BUILTIN, Template, detect_family, memory_gb, plan, render


@pytest.mark.parametrize(("model", "family"), [
    ("bert-base-uncased", "text"), ("meta-llama/Llama-3.1-8B", "text"), ("t5-small", "text"),
    ("google/vit-base-patch16-224", "vision"), ("microsoft/resnet-50", "vision"),
    ("openai/whisper-tiny", "audio"), ("facebook/wav2vec2-base", "audio"),
    ("openai/clip-vit-base-patch32", "multimodal"),
    ("Salesforce/blip-image-captioning-base", "multimodal"),
])
def test_the_family_from_the_name(model: str, family: str) -> None:
    assert detect_family(model)[0] == family


def test_a_mapping_wins_over_the_name_and_a_config_tells_what_the_name_does_not() -> None:
    assert detect_family("bert-for-images", mapping={"bert-for-images": "vision"}) == (
        "vision", "model_mapping")
    assert detect_family("acme/x1", {"model_type": "whisper"})[0] == "audio"
    assert detect_family("acme/x2", {"vision_config": {}, "text_config": {}})[0] == "multimodal"
    assert detect_family("acme/x3", {"image_size": 224, "num_channels": 3})[0] == "vision"
    with pytest.raises(InvalidInput, match="--family"):
        detect_family("acme/x4")


def test_memory_grows_with_the_batch_and_the_precision() -> None:
    assert memory_gb("text", "fp32", 1) < memory_gb("text", "fp32", 32)
    assert memory_gb("vision", "int8", 8) < memory_gb("vision", "fp16", 8) < memory_gb(
        "vision", "fp32", 8) < memory_gb("vision", "fp64", 8)
    assert memory_gb("multimodal", "fp32", 8) > memory_gb("text", "fp32", 8)


def test_the_plan_is_a_chain_per_hardware_and_precision() -> None:
    tasks = plan("bert-base-uncased", "text", hardware=["cpu", "cuda"], batch_sizes=[32, 1, 8],
                 precisions=["fp32", "fp16"], templates=[], prefix="g1")
    assert len(tasks) == 2 * 2 * 3
    by_id = {t.task_id: t for t in tasks}
    chain = [by_id[f"g1-cuda-fp16-b{n}"] for n in (1, 8, 32)]
    assert [t.depends_on for t in chain] == [(), ("g1-cuda-fp16-b1",), ("g1-cuda-fp16-b8",)]
    assert [t.spec.dependencies for t in chain] == [t.depends_on for t in chain]
    assert [t.spec.priority for t in chain] == [3, 2, 1]  # the smallest runs first
    assert all(t.spec.requirements.gpus == 1 for t in chain)
    assert all(t.spec.requirements.hardware == ("cuda",) for t in chain)
    assert by_id["g1-cpu-fp32-b8"].spec.requirements.gpus == 0
    spec = by_id["g1-cpu-fp32-b8"].spec
    assert spec.type == "benchmark" and spec.config["batch_sizes"] == [8]
    assert spec.config["model"] == "bert-base-uncased" and spec.requirements.exclusive
    assert spec.requirements.min_memory_gb == memory_gb("text", "fp32", 8)


SMOKE = Template("smoke", 2, "text", "*", "test", json.dumps(
    {"type": "command", "name": "smoke ${model_name}",
     "config": {"argv": ["python", "-c", "print('${model_name} on ${hardware_type}')"]}}))


def test_a_test_template_runs_first_and_the_most_specific_template_is_used() -> None:
    mine = Template("mine", 1, "text", "cuda", "benchmark", json.dumps(
        {"type": "benchmark", "config": {"model": "${model_name}", "batch_sizes":
                                         ["${batch_size}"], "iterations": 3}}))
    tasks = plan("bert-base-uncased", "text", hardware=["cpu", "cuda"], batch_sizes=[1, 8],
                 precisions=["fp32"], templates=[SMOKE, mine, BUILTIN], prefix="g2")
    by_id = {t.task_id: t for t in tasks}
    assert by_id["g2-cpu-test"].spec.config["argv"][-1] == "print('bert-base-uncased on cpu')"
    assert by_id["g2-cpu-fp32-b1"].depends_on == ("g2-cpu-test",)
    assert by_id["g2-cpu-fp32-b1"].template == "builtin-benchmark@1"
    assert by_id["g2-cuda-fp32-b8"].template == "mine@1"
    assert by_id["g2-cuda-fp32-b8"].spec.config["iterations"] == 3


@pytest.mark.parametrize("content", [
    '{"type": "benchmark", "config": {"batch_sizes": ["${model_name}"]}}',  # not a number
    '{"type": "no-such-type"}', '[1, 2]', "not json",
    '{"type": "command", "config": {"argv": []}}',
])
def test_a_template_that_does_not_make_a_valid_task_is_refused(content: str) -> None:
    with pytest.raises(InvalidInput):
        render(Template("bad", 1, "*", "*", "benchmark", content),
               {"model_name": "m", "model_family": "text", "hardware_type": "cpu",
                "precision": "fp32", "batch_size": 1})


def test_values_go_into_the_json_not_its_text() -> None:
    spec = render(SMOKE, {"model_name": 'x", "evil": "1', "model_family": "text",
                          "hardware_type": "cpu", "precision": "fp32", "batch_size": 1})
    assert spec.name == 'smoke x", "evil": "1'


@pytest.mark.parametrize("kw", [{"hardware": []}, {"batch_sizes": [0]},
                                {"precisions": ["fp8"]}, {"hardware": ["c u d a"]}])
def test_a_bad_plan_request_is_a_clear_error(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"hardware": ["cpu"], "batch_sizes": [1], "precisions": ["fp32"],
                               "templates": [], "prefix": "g3", **kw}
    with pytest.raises(InvalidInput):
        plan("bert", "text", **args)  # type: ignore[arg-type]
