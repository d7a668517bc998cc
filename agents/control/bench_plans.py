"""Importing benchmark results measured elsewhere: one event per import, written once."""

from __future__ import annotations

import msgspec

from agents.control.plans import Plan
from agents.log.commit import Change
from dtf_core import subjects
from dtf_core.commands import Imported, ImportResults
from dtf_core.errors import InvalidInput
from dtf_core.events.bench import BenchImported
from dtf_core.ids import validate_id

MAX_IMPORTED = 5_000  # results per import
MAX_IMPORT_BYTES = 768 * 1024  # the event must fit a NATS message


def plan_import(cmd: ImportResults, *, now: float) -> Plan:
    """The import's one event, appended only if nothing was written under its id yet (an
    import of the same file again conflicts; the api reports it as done before)."""
    validate_id(cmd.import_id, "import id")
    if cmd.run_id is not None:
        validate_id(cmd.run_id, "run id")
    if not cmd.results:
        raise InvalidInput("nothing to import: the file has no benchmarks")
    if len(cmd.results) > MAX_IMPORTED:
        raise InvalidInput(f"{len(cmd.results)} results: at most {MAX_IMPORTED} per import")
    event = BenchImported(import_id=cmd.import_id, source=cmd.source[:64], run_id=cmd.run_id,
                          results=tuple(cmd.results), at=now, actor=cmd.actor)
    if len(msgspec.msgpack.encode(event)) > MAX_IMPORT_BYTES:
        raise InvalidInput(f"the import is over {MAX_IMPORT_BYTES // 1024} KiB: split the "
                           "file, or save it without per-round data")
    change = Change([event], 0, subjects.bench_filter(cmd.import_id))
    return Plan([change], lambda: Imported(import_id=cmd.import_id, results=len(cmd.results)))
