"""Events of the autoscaler. Subjects: ``dtf.evt.scale.<group>.<type>``.

Each decision is recorded before it is carried out (``requested``, with its reason and the
figures it was made from) and after (``done``, with the outcome or why it failed), so
`dtf explain` and the audit can say why the pool grew or shrank.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

ScaleDirection = Literal["up", "down"]


class ScaleEventBase(Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    group: str  # the worker group the autoscaler manages (e.g. "local")
    decision: str  # the decision's id: a requested and its done share it
    at: float
    actor: str


class ScaleRequested(ScaleEventBase, frozen=True, kw_only=True, tag="scale_requested"):
    direction: ScaleDirection
    current: int  # the group's workers when it decided
    target: int  # how many it asked for
    reason: str
    workers: tuple[str, ...] = ()  # the ids to start, or the idle ones to drain and stop
    provider: str = ""
    queued: int = 0
    running: int = 0
    predicted_s: float = 0.0  # the queued work's estimated seconds


class ScaleDone(ScaleEventBase, frozen=True, kw_only=True, tag="scale_done"):
    ok: bool
    workers: tuple[str, ...] = ()  # the ids started, or stopped after draining
    reason: str = ""  # why it failed, or what it did
    took_s: float = 0.0


ScaleEvent = ScaleRequested | ScaleDone
