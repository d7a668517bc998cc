"""Prometheus metrics (`GET /metrics`), from the live feed's events and, at each scrape,
the api's and the projector's positions and counts.

- ``dtf_leases_total``, ``dtf_events_total{type}``, ``dtf_results_refused_total``:
  counted from the events as they are appended (since the HTTP agent started).
- ``dtf_task_queue_seconds``, ``dtf_task_start_seconds``, ``dtf_task_run_seconds{outcome}``,
  ``dtf_task_total_seconds{outcome}``: submit → lease → start → end, from the events'
  times, for the tasks submitted while the agent ran.
- ``dtf_queue_depth{group}``, ``dtf_tasks{status}``, ``dtf_workers{state}``,
  ``dtf_api_lag_events``, ``dtf_projector_lag_events``, ``dtf_report_resends``: read at
  each scrape."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats.errors
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agents.wire.client import ApiClient
from agents.wire.projector import projector_status
from dtf_core.errors import Unavailable

log = logging.getLogger(__name__)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0, 900.0, 3600.0)
ENDED = {"succeeded", "failed", "timed_out", "cancelled"}
MAX_TRACKED = 1_000_000  # tasks in flight whose times are kept
MAX_QUEUED_ROWS = 10_000  # queued tasks read per scrape for the per-group depth


@dataclass
class Times:
    submitted: float
    leased: float | None = None
    started: float | None = None


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("dtf_events", "Events appended, by type", ["type"], registry=r)
        self.leases = Counter("dtf_leases", "Leases granted", registry=r)
        self.refused = Counter("dtf_results_refused",
                               "Results refused (a stale lease's, or a replaced attempt's)",
                               registry=r)
        self.queue_s = Histogram("dtf_task_queue_seconds", "Submitted to leased",
                                 buckets=BUCKETS, registry=r)
        self.start_s = Histogram("dtf_task_start_seconds", "Leased to started",
                                 buckets=BUCKETS, registry=r)
        self.run_s = Histogram("dtf_task_run_seconds", "Started to ended", ["outcome"],
                               buckets=BUCKETS, registry=r)
        self.total_s = Histogram("dtf_task_total_seconds", "Submitted to ended", ["outcome"],
                                 buckets=BUCKETS, registry=r)
        self.queue_depth = Gauge("dtf_queue_depth", "Tasks queued, by worker group ('' for "
                                 "none)", ["group"], registry=r)
        self.tasks = Gauge("dtf_tasks", "Tasks by status", ["status"], registry=r)
        self.workers = Gauge("dtf_workers", "Workers by state", ["state"], registry=r)
        self.api_lag = Gauge("dtf_api_lag_events", "Events appended that the api has not "
                             "folded yet", registry=r)
        self.resends = Gauge("dtf_report_resends", "Report batches the workers' current "
                             "sessions sent again (no answer, or the api unavailable)",
                             registry=r)
        self.projector_lag = Gauge("dtf_projector_lag_events", "Events the api has folded "
                                   "that the projector has not stored yet", registry=r)
        self.times: dict[str, Times] = {}

    def observe(self, items: list[dict[str, object]]) -> None:
        """The live feed's event summaries, in log order."""
        for item in items:
            kind, name = item.get("type"), item.get("task_id")
            self.events.labels(str(kind)).inc()
            at = item.get("time")
            if item.get("kind") != "task" or not isinstance(name, str) \
                    or not isinstance(at, float | int):
                continue
            if kind == "submitted" and len(self.times) < MAX_TRACKED:
                self.times[name] = Times(float(at))
            elif kind == "leased":
                self.leases.inc()
                self._lapse(name, "leased", float(at))
            elif kind == "started":
                self._lapse(name, "started", float(at))
            elif kind == "result_refused":
                self.refused.inc()
            elif kind in ENDED:
                times = self.times.pop(name, None)
                if times is not None:
                    outcome = str(kind)
                    self.total_s.labels(outcome).observe(max(0.0, at - times.submitted))
                    if times.started is not None:
                        self.run_s.labels(outcome).observe(max(0.0, at - times.started))
            elif kind == "requeued" and name in self.times:
                self.times[name].leased = self.times[name].started = None

    def _lapse(self, task_id: str, step: str, at: float) -> None:
        times = self.times.get(task_id)
        if times is None:
            return
        if step == "leased" and times.leased is None:
            times.leased = at
            self.queue_s.observe(max(0.0, at - times.submitted))
        elif step == "started" and times.started is None and times.leased is not None:
            times.started = at
            self.start_s.observe(max(0.0, at - times.leased))

    async def scrape(self, api: ApiClient, head_seq: int) -> bytes:
        """The text exposition, with the gauges read now."""
        try:
            status = await api.status()
            self.api_lag.set(max(0, head_seq - status.last_seq))
            self.tasks.clear()
            for name, n in status.tasks.items():
                self.tasks.labels(name).set(n)
            self.workers.clear()
            resends = 0
            for w in await api.workers():
                self.workers.labels(w.state).inc()
                resends += w.load.report_resends if w.load is not None else 0
            self.resends.set(resends)
            self.queue_depth.clear()
            if status.tasks.get("queued"):
                for row in await api.tasks(status="queued", limit=MAX_QUEUED_ROWS):
                    self.queue_depth.labels(row.group or "").inc()
            try:
                projected = await projector_status(api.nc)
                if isinstance(projected.last_seq, int):
                    self.projector_lag.set(max(0, status.last_seq - projected.last_seq))
            except nats.errors.Error as exc:  # no projector running: no figure
                log.debug("no projector status: %r", exc)
        except Unavailable as exc:  # the api restarting: the counters still answer
            log.info("metrics without the api's figures: %s", exc)
        return bytes(generate_latest(self.registry))


__all__ = ["CONTENT_TYPE", "Metrics"]
