"""Benchmark results measured elsewhere and imported (pytest-benchmark's JSON). Subject:
``dtf.evt.bench.<import_id>.imported``; the import id is the content hash of what was
imported, so the same file imported twice is written once."""

from __future__ import annotations

from msgspec import Struct

from dtf_core.benchmarks import BenchResult


class ImportedResult(Struct, frozen=True, kw_only=True):
    name: str  # the benchmark's name where it was measured (pytest-benchmark's fullname)
    result: BenchResult
    measured_at: float | None = None  # when it was measured (Unix time), if the file says


class BenchEventBase(Struct, frozen=True, kw_only=True, tag_field="type"):
    import_id: str
    at: float
    actor: str


class BenchImported(BenchEventBase, frozen=True, kw_only=True, tag="imported"):
    source: str  # "pytest-benchmark"
    run_id: str | None = None
    results: tuple[ImportedResult, ...]


BenchEvent = BenchImported
