"""The worker aggregate: registration, stop and loss, folded from events."""

from __future__ import annotations

import re
from typing import Literal

from msgspec import Struct, structs

from dtf_core.errors import Refused
from dtf_core.events.worker import (
    Capabilities,
    SchedulingMode,
    WorkerCapabilitiesChanged,
    WorkerEvent,
    WorkerLost,
    WorkerRegistered,
    WorkerSchedulingChanged,
    WorkerStopped,
)

WorkerStatus = Literal["alive", "stopped", "lost"]


class WorkerState(Struct, frozen=True, kw_only=True):
    worker_id: str
    session: str
    hostname: str = ""
    pid: int = 0
    slots: int = 1
    capabilities: Capabilities = Capabilities()
    signing_key: bytes | None = None
    heartbeat_interval: float | None = None
    status: WorkerStatus = "alive"
    scheduling: SchedulingMode = "open"
    registered_at: float = 0.0
    last_event_at: float = 0.0
    last_seq: int = 0


def evolve(state: WorkerState | None, event: WorkerEvent, seq: int) -> WorkerState:
    if state is not None and seq <= state.last_seq:
        return state
    match event:
        case WorkerSchedulingChanged():
            if state is None:
                return WorkerState(worker_id=event.worker_id, session="", status="stopped",
                                   scheduling=event.mode, last_seq=seq)
            return structs.replace(state, scheduling=event.mode, last_seq=seq)
        case WorkerRegistered():
            return WorkerState(
                scheduling=state.scheduling if state is not None else "open",
                worker_id=event.worker_id,
                session=event.session,
                hostname=event.hostname,
                pid=event.pid,
                slots=event.slots,
                capabilities=event.capabilities,
                signing_key=event.signing_key,
                heartbeat_interval=event.heartbeat_interval,
                registered_at=event.at,
                last_event_at=event.at,
                last_seq=seq,
            )
        case WorkerCapabilitiesChanged():
            if state is None:  # never written by the api (it checks the session is live)
                return WorkerState(worker_id=event.worker_id, session=event.session,
                                   status="stopped", last_seq=seq)
            if event.session != state.session:
                return structs.replace(state, last_seq=seq)
            return structs.replace(state, capabilities=event.capabilities,
                                   last_event_at=event.at, last_seq=seq)
        case WorkerStopped() | WorkerLost():
            status: WorkerStatus = "stopped" if isinstance(event, WorkerStopped) else "lost"
            if state is None:
                return WorkerState(
                    worker_id=event.worker_id,
                    session=event.session,
                    status=status,
                    last_event_at=event.at,
                    last_seq=seq,
                )
            if event.session != state.session:
                return structs.replace(state, last_seq=seq)
            return structs.replace(state, status=status, last_event_at=event.at, last_seq=seq)
    return state


AUTO_INFIX = "-auto-"
_AUTOSCALED = re.compile(r"(.+)" + AUTO_INFIX + r"[1-9][0-9]{0,8}")


def autoscaled_group(worker_id: str) -> str | None:
    """The group of an autoscaled worker's id (``<group>-auto-<n>``: what an autoscaler of
    the group names the workers it starts), None for any other id."""
    found = _AUTOSCALED.fullmatch(worker_id)
    return found.group(1) if found else None


def decide_register(
    *,
    worker_id: str,
    session: str,
    hostname: str,
    pid: int,
    slots: int,
    capabilities: Capabilities,
    now: float,
    actor: str,
    signing_key: bytes | None = None,
    heartbeat_interval: float | None = None,
) -> list[WorkerEvent]:
    group = autoscaled_group(worker_id)
    if group is not None and capabilities.group != group:
        # an autoscaler may create keys only for its own group's ids: the worker holding one
        # must not take another group's tasks
        raise Refused(f"worker {worker_id} is an autoscaled worker of group {group!r}: it "
                      f"registers in group {group!r} only, not {capabilities.group!r}")
    return [
        WorkerRegistered(
            worker_id=worker_id,
            session=session,
            hostname=hostname,
            pid=pid,
            slots=slots,
            capabilities=capabilities,
            signing_key=signing_key,
            heartbeat_interval=heartbeat_interval,
            at=now,
            actor=actor,
        )
    ]


def decide_lost(
    state: WorkerState, *, session: str, last_seen: float, now: float, actor: str, reason: str
) -> list[WorkerEvent]:
    if state.status != "alive" or state.session != session:
        return []
    return [
        WorkerLost(
            worker_id=state.worker_id,
            session=session,
            reason=reason,
            last_seen=last_seen,
            at=now,
            actor=actor,
        )
    ]


def decide_stop(state: WorkerState, *, session: str, now: float, actor: str) -> list[WorkerEvent]:
    if state.status != "alive" or state.session != session:
        return []
    return [WorkerStopped(worker_id=state.worker_id, session=session, at=now, actor=actor)]


def decide_capabilities(state: WorkerState, *, session: str, capabilities: Capabilities,
                        now: float, actor: str) -> list[WorkerEvent]:
    """A live session's own capabilities, found after it registered."""
    if state.status != "alive" or state.session != session:
        raise Refused(f"worker {state.worker_id} has no live session {session}")
    if capabilities == state.capabilities:
        return []
    return [WorkerCapabilitiesChanged(worker_id=state.worker_id, session=session,
                                      capabilities=capabilities, at=now, actor=actor)]


def decide_scheduling(state: WorkerState, mode: SchedulingMode, *, reason: str, now: float,
                      actor: str) -> list[WorkerEvent]:
    if state.scheduling == mode:
        return []
    return [WorkerSchedulingChanged(worker_id=state.worker_id, mode=mode, reason=reason,
                                    at=now, actor=actor)]
