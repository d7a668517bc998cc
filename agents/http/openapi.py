"""The OpenAPI document, from the same structs the api answers with (msgspec's schemas):
what it says is what the wire carries."""

from __future__ import annotations

from typing import Any

import msgspec

from agents.wire.output import TaskOutput, TestRow
from dtf_core import replies as r
from dtf_core.commands import SubmitResult
from dtf_core.spec import TaskSpec
from projections.trends import TrendReport

REF = "#/components/schemas/{name}"
ERRORS = {"400": "bad input", "401": "missing or bad credential",
          "403": "the role may not do this", "404": "unknown id", "409": "conflict",
          "429": "too many failed logins", "503": "unavailable or catching up"}
# path, method, summary, answer (a struct, [struct] for a page, or None)
OPERATIONS: list[tuple[str, str, str, Any]] = [
    ("/health", "get", "Liveness of the HTTP agent and its NATS connection", None),
    ("/api/me", "get", "The caller's subject and role", None),
    ("/api/status", "get", "Counts, leaders and the log position", r.Status),
    ("/api/dashboard", "get", "The dashboard's aggregated counts", None),
    ("/api/workers", "get", "Workers (filters: state, scheduling; cursor: after)",
     [r.WorkerRow]),
    ("/api/workers/{worker_id}", "get", "One worker: hardware, load, state", r.WorkerRow),
    ("/api/workers/{worker_id}/{action}", "post", "cordon, drain or uncordon a worker",
     r.SchedulingChanged),
    ("/api/tasks", "get", "Tasks, newest change first (filters: status, run_id)",
     [r.TaskSummary]),
    ("/api/tasks", "post", "Submit a task spec, a list, or {tasks, run_name}", SubmitResult),
    ("/api/tasks/{task_id}", "get", "One task with its spec and history", r.TaskDetail),
    ("/api/tasks/{task_id}", "delete", "Cancel a task", r.CancelResult),
    ("/api/tasks/{task_id}/events", "get", "A task's events", [r.HistoryEntry]),
    ("/api/tasks/{task_id}/explain", "get", "Why a task is where it is", r.Explanation),
    ("/api/tasks/{task_id}/logs", "get", "What a task printed, up to 2 MiB", TaskOutput),
    ("/api/runs", "get", "Runs, newest first, with their tasks by status", [r.RunSummary]),
    ("/api/runs/{run_id}/tasks", "get", "A run's tasks", [r.TaskSummary]),
    ("/api/runs/{run_id}/tests", "get", "A run's test results (filter: outcome)", [TestRow]),
    ("/api/runs/{run_id}/cancel", "post", "Cancel every task of a run not ended", None),
    ("/api/tests/flaky", "get", "Tests that both passed and failed (days, limit)",
     [r.FlakyTest]),
    ("/api/trends", "get", "Benchmark series: change points, forecasts, runs compared "
     "(baseline, candidate), flaky tests by hardware (model, hardware, precision, workload, "
     "commit, metric, limit)", TrendReport),
]


def document() -> dict[str, Any]:
    types = {t for *_, t in OPERATIONS if isinstance(t, type)} | {
        t[0] for *_, t in OPERATIONS if isinstance(t, list)} | {TaskSpec}
    _, components = msgspec.json.schema_components(sorted(types, key=lambda t: t.__name__),
                                                    ref_template=REF, schema_hook=_any)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, answer in OPERATIONS:
        op: dict[str, Any] = {"summary": summary, "responses": {
            "200" if method != "post" or path != "/api/tasks" else "201":
                {"description": "OK", "content": _content(answer)},
            **{code: {"description": text, "content": _content(None, error=True)}
               for code, text in ERRORS.items()}}}
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        if method == "get" and isinstance(answer, list):
            op.setdefault("parameters", []).extend(
                {"name": n, "in": "query", "schema": {"type": "string"}}
                for n in ("limit", "cursor", "status", "run_id", "state", "after"))
        if (path, method) == ("/api/tasks", "post"):
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"oneOf": [{"$ref": REF.format(name="TaskSpec")},
                                     {"type": "array",
                                      "items": {"$ref": REF.format(name="TaskSpec")}}]}}}}
        paths.setdefault(path, {})[method] = op
    return {"openapi": "3.1.0",
            "info": {"title": "DTF", "version": "1",
                     "description": "DTF's REST API: the CLI's commands and queries over "
                                    "HTTP, under the caller's own token."},
            "components": {"schemas": components, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "dtf_session"}}},
            "security": [{"bearer": []}, {"session": []}],
            "paths": paths}


def _any(kind: type) -> dict[str, Any]:
    """``object`` (a spec's config, an event's data): any JSON value."""
    if kind is object:
        return {"description": "any JSON value"}
    raise NotImplementedError(f"no JSON schema for {kind!r}")


def _content(answer: Any, error: bool = False) -> dict[str, Any]:
    if error:
        schema: dict[str, Any] = {"type": "object", "properties": {"error": {
            "type": "object", "properties": {"code": {"type": "string"},
                                             "message": {"type": "string"}}}}}
    elif isinstance(answer, list):
        schema = {"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": REF.format(name=answer[0].__name__)}},
            "next": {"type": ["string", "null"]}}}
    elif isinstance(answer, type):
        schema = {"$ref": REF.format(name=answer.__name__)}
    else:
        schema = {"type": "object"}
    return {"application/json": {"schema": schema}}
