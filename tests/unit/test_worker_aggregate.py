"""The worker aggregate: registration, stop and loss per session."""

from __future__ import annotations

from dtf_core.events.worker import Capabilities, WorkerLost, WorkerRegistered, WorkerStopped
from dtf_core.worker import WorkerState, decide_lost, decide_register, decide_stop, evolve

CAPS = Capabilities(cpu_count=8, memory_gb=32, hardware=("cpu", "gpu"), cuda_compute=8.6)


def registered(session: str = "s1", at: float = 10.0) -> WorkerRegistered:
    return WorkerRegistered(worker_id="w1", session=session, hostname="h", pid=42, slots=4,
                            capabilities=CAPS, at=at, actor="w1")


def fold(*events: WorkerRegistered | WorkerStopped | WorkerLost) -> WorkerState:
    state: WorkerState | None = None
    for seq, event in enumerate(events, start=1):
        state = evolve(state, event, seq)
    assert state is not None
    return state


def test_register_decides_one_event() -> None:
    events = decide_register(worker_id="w1", session="s1", hostname="h", pid=42, slots=4,
                             capabilities=CAPS, now=10.0, actor="w1")
    assert events == [registered()]


def test_registered_worker_is_alive() -> None:
    state = fold(registered())
    assert (state.status, state.slots, state.capabilities) == ("alive", 4, CAPS)
    assert state.registered_at == 10.0 and state.last_seq == 1


def test_stop_of_the_current_session() -> None:
    state = fold(registered(), WorkerStopped(worker_id="w1", session="s1", at=20.0, actor="w1"))
    assert state.status == "stopped" and state.last_event_at == 20.0


def test_loss_of_an_old_session_leaves_the_new_one_alive() -> None:
    state = fold(
        registered("s1"),
        registered("s2", at=15.0),
        WorkerLost(worker_id="w1", session="s1", reason="silent", last_seen=12.0, at=20.0,
                   actor="recovery"),
    )
    assert (state.status, state.session, state.last_seq) == ("alive", "s2", 3)


def test_stop_or_loss_of_an_unknown_worker_is_not_alive() -> None:
    stopped = evolve(None, WorkerStopped(worker_id="w9", session="s", at=1.0, actor="w9"), 1)
    lost = evolve(None, WorkerLost(worker_id="w9", session="s", reason="x", last_seen=0.0,
                                   at=1.0, actor="recovery"), 1)
    assert stopped.status == "stopped"
    assert lost.status == "lost"


def test_evolve_ignores_old_sequences() -> None:
    state = fold(registered())
    stop = WorkerStopped(worker_id="w1", session="s1", at=20.0, actor="w1")
    assert evolve(state, stop, 1) is state
    assert evolve(state, stop, 2).status == "stopped"


def test_decide_lost_only_for_the_live_session() -> None:
    state = fold(registered())
    assert decide_lost(state, session="s1", last_seen=9.0, now=30.0, actor="recovery",
                       reason="silent") == [
        WorkerLost(worker_id="w1", session="s1", reason="silent", last_seen=9.0, at=30.0,
                   actor="recovery")
    ]
    assert decide_lost(state, session="s0", last_seen=9.0, now=30.0, actor="recovery",
                       reason="silent") == []
    lost = evolve(state, WorkerLost(worker_id="w1", session="s1", reason="x", last_seen=9.0,
                                    at=30.0, actor="recovery"), 2)
    assert decide_lost(lost, session="s1", last_seen=9.0, now=40.0, actor="recovery",
                       reason="silent") == []


def test_decide_stop_only_for_the_live_session() -> None:
    state = fold(registered())
    assert decide_stop(state, session="s1", now=30.0, actor="w1") == [
        WorkerStopped(worker_id="w1", session="s1", at=30.0, actor="w1")
    ]
    assert decide_stop(state, session="other", now=30.0, actor="w1") == []
    stopped = evolve(state, WorkerStopped(worker_id="w1", session="s1", at=30.0, actor="w1"), 2)
    assert decide_stop(stopped, session="s1", now=31.0, actor="w1") == []


def test_an_autoscaled_worker_registers_only_in_its_group() -> None:
    """``<group>-auto-<n>`` is the id an autoscaler of the group gives a worker, and the
    only kind of key it may create: its key cannot open another group's tasks to it."""
    import msgspec
    import pytest

    from dtf_core.errors import Refused
    from dtf_core.worker import autoscaled_group

    assert autoscaled_group("gpu-auto-3") == "gpu"
    assert autoscaled_group("a-auto-1-auto-2") == "a-auto-1"
    assert [autoscaled_group(w) for w in ("gpu-auto-0", "gpu-auto-", "w1", "auto-1")] == \
        [None, None, None, None]

    def register(worker_id: str, group: str) -> None:
        decide_register(worker_id=worker_id, session="s1", hostname="h", pid=1, slots=1,
                        capabilities=msgspec.structs.replace(CAPS, group=group), now=1.0,
                        actor=worker_id)

    register("gpu-auto-3", "gpu")
    register("w1", "gpu")
    for group in ("cpu", ""):
        with pytest.raises(Refused, match="registers in group 'gpu' only"):
            register("gpu-auto-3", group)
