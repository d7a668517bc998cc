"""Events of the run aggregate. Subjects: ``dtf.evt.run.<run_id>.<type>``."""

from __future__ import annotations

from msgspec import Struct


class RunEventBase(Struct, frozen=True, kw_only=True, tag_field="type"):
    run_id: str
    at: float
    actor: str


class RunCreated(RunEventBase, frozen=True, kw_only=True, tag="created"):
    task_ids: tuple[str, ...]
    name: str = ""


RunEvent = RunCreated
