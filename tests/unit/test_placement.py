"""Placement: requirements against capabilities, slots, priority order and the recorded why."""

from __future__ import annotations

import pytest

from dtf_core.events.worker import Capabilities
from dtf_core.placement import Slot, mismatch, place
from dtf_core.spec import Requirements

CPU = Capabilities(memory_gb=16, hardware=("cpu",))
GPU = Capabilities(memory_gb=64, hardware=("cpu", "gpu"), cuda_compute=8.0)
ANY = Requirements()


def slot(worker_id: str, caps: Capabilities = CPU, free: int = 1, slots: int | None = None) -> Slot:
    return Slot(worker_id=worker_id, session="s-" + worker_id, capabilities=caps, free=free,
                slots=slots if slots is not None else max(free, 1))


@pytest.mark.parametrize(
    ("req", "caps", "reason"),
    [
        (Requirements(hardware=("gpu",)), CPU, "lacks hardware gpu"),
        (Requirements(hardware=("gpu", "tpu")), GPU, "lacks hardware tpu"),
        (Requirements(min_memory_gb=32), CPU, "has 16.0 GB memory, needs 32"),
        (Requirements(min_cuda_compute=7.5), CPU, "has no CUDA, needs CUDA compute 7.5"),
        (Requirements(min_cuda_compute=9.0), GPU, "has CUDA 8, needs CUDA compute 9"),
    ],
)
def test_mismatch_names_the_reason(req: Requirements, caps: Capabilities, reason: str) -> None:
    assert mismatch(req, caps) == reason


@pytest.mark.parametrize(
    ("req", "caps"),
    [
        (ANY, CPU),
        (Requirements(hardware=("gpu",), min_memory_gb=64, min_cuda_compute=8.0), GPU),
        (Requirements(hardware=("fast-disk",)), Capabilities(tags=("fast-disk",))),
        (Requirements(min_memory_gb=0), Capabilities(memory_gb=0)),
    ],
)
def test_mismatch_none_when_the_worker_fits(req: Requirements, caps: Capabilities) -> None:
    assert mismatch(req, caps) is None


def test_place_stops_when_the_slots_are_full() -> None:
    slots = [slot("w1", free=2)]
    decisions = place([("t1", ANY), ("t2", ANY), ("t3", ANY)], slots)
    assert [(d.task_id, d.worker_id, d.session) for d in decisions] == [
        ("t1", "w1", "s-w1"), ("t2", "w1", "s-w1")]
    assert slots[0].free == 0


def test_place_follows_the_given_priority_order() -> None:
    decisions = place([("high", ANY), ("mid", ANY), ("low", ANY)], [slot("w1"), slot("w2")])
    assert [d.task_id for d in decisions] == ["high", "mid"]


def test_place_with_no_free_slot_places_nothing() -> None:
    assert place([("t1", ANY)], [slot("w1", free=0, slots=2)]) == []
    assert place([("t1", ANY)], []) == []


def test_place_prefers_the_least_loaded_worker() -> None:
    slots = [slot("busy", free=1, slots=4), slot("idle", free=4, slots=4)]
    [decision] = place([("t1", ANY)], slots)
    assert decision.worker_id == "idle"
    assert decision.why.scores == {"idle": 0.75}
    assert [s.free for s in slots] == [1, 3]


def test_place_records_why_others_were_filtered() -> None:
    slots = [slot("cpu1"), slot("gpu1", GPU)]
    [decision] = place([("train", Requirements(hardware=("gpu",)))], slots)
    assert decision.worker_id == "gpu1"
    assert decision.why.filtered == {"cpu1": "lacks hardware gpu"}
    assert decision.why.candidates == 1
    assert decision.why.policy == "default"


def test_a_task_nobody_fits_is_skipped_and_later_ones_still_placed() -> None:
    decisions = place([("gpu-task", Requirements(hardware=("gpu",))), ("cpu-task", ANY)],
                      [slot("cpu1")])
    assert [(d.task_id, d.worker_id) for d in decisions] == [("cpu-task", "cpu1")]


def test_a_full_worker_is_not_chosen_again() -> None:
    slots = [slot("w1", free=1), slot("w2", free=1)]
    decisions = place([("t1", ANY), ("t2", ANY)], slots)
    assert sorted(d.worker_id for d in decisions) == ["w1", "w2"]


def test_slots_left_over_serve_a_second_call() -> None:
    slots = [slot("w1", free=3, slots=3)]
    first = place([("t1", ANY)], slots)
    second = place([("t2", ANY), ("t3", ANY), ("t4", ANY)], slots)
    assert [d.task_id for d in first + second] == ["t1", "t2", "t3"]


def test_a_rerun_prefers_a_worker_it_has_not_tried() -> None:
    from dtf_core.events.worker import Capabilities
    from dtf_core.placement import Slot, place
    from dtf_core.spec import Requirements

    def slots() -> list[Slot]:
        return [Slot(worker_id=w, session="s", capabilities=Capabilities(), slots=4, free=f)
                for w, f in (("w1", 4), ("w2", 1))]

    req = Requirements(avoid_workers=("w1",))
    assert place([("t", req)], slots())[0].worker_id == "w2"
    assert place([("t", Requirements())], slots())[0].worker_id == "w1"  # least loaded
    busy_w2 = slots()
    busy_w2[1].free = 0
    assert place([("t", req)], busy_w2) == []  # waits for w2 rather than going back to w1
    only_w1 = [s for s in slots() if s.worker_id == "w1"]
    assert place([("t", req)], only_w1)[0].worker_id == "w1"  # no other worker: back to w1


def test_memory_and_gpu_reservations_limit_leases_per_worker() -> None:
    from dtf_core.events.worker import Capabilities, Gpu
    from dtf_core.placement import Slot, place
    from dtf_core.spec import Requirements

    two_gpus = (Gpu(vendor="nvidia", name="H100"), Gpu(vendor="nvidia", name="H100"))
    slot = Slot(worker_id="w1", session="s", slots=8, free=8,
                capabilities=Capabilities(memory_gb=32, gpus=two_gpus))
    mem = Requirements(min_memory_gb=12)
    assert len(place([(f"m{i}", mem) for i in range(5)], [slot])) == 2  # 12 + 12 <= 32
    gpu = Requirements(gpus=1)
    assert len(place([(f"g{i}", gpu) for i in range(5)], [slot])) == 2  # two devices
    assert place([("big", Requirements(gpus=3))], [slot]) == []
    busy = Slot(worker_id="w2", session="s", slots=8, free=8, free_gpus=0,
                capabilities=Capabilities(memory_gb=32, gpus=two_gpus))
    assert place([("g", gpu)], [busy]) == []  # its GPUs are reserved by live leases


EXCLUSIVE = Requirements(exclusive=True)


def test_an_exclusive_task_waits_for_an_idle_worker_and_then_has_it_alone() -> None:
    busy, idle = slot("busy", free=1, slots=2), slot("idle", free=2, slots=2)
    decisions = place([("bench", EXCLUSIVE), ("a", ANY), ("b", ANY)], [busy, idle])
    assert [(d.task_id, d.worker_id) for d in decisions] == [
        ("bench", "idle"), ("a", "busy")]  # nothing joins the benchmark; b waits
    assert idle.free == 0 and busy.free == 0


def test_a_worker_running_an_exclusive_task_takes_nothing_more() -> None:
    from dtf_core.placement import overcommit

    assert overcommit([EXCLUSIVE], ANY, 4, CPU) == "an exclusive task (a benchmark) runs here"
    assert overcommit([ANY], EXCLUSIVE, 4, CPU) == \
        "it needs the worker to itself and 1 tasks run here"
    assert overcommit([], EXCLUSIVE, 4, CPU) == ""


def test_a_fingerprint_requirement_matches_only_that_hardware() -> None:
    from dtf_core.events.worker import Gpu

    h100 = Capabilities(memory_gb=64, hardware=("cpu", "cuda"), cpu_model="Xeon",
                        gpus=(Gpu(vendor="nvidia", name="H100", driver="570.1"),))
    fp = h100.fingerprint
    assert mismatch(Requirements(fingerprint=fp), h100) is None
    assert mismatch(Requirements(fingerprint=fp), CPU) == \
        f"its hardware fingerprint is not {fp}"
    decisions = place([("again", Requirements(fingerprint=fp))], [slot("c"), slot("g", h100)])
    assert [d.worker_id for d in decisions] == ["g"]
