"""Live updates: one tail of the event log for the whole HTTP agent (a consumer the api
opens for the agent's own credential), fanned out to WebSocket clients.

Each client has a bounded queue and never slows the feed: an event client that falls
``QUEUE_BATCHES`` batches behind is dropped (it reconnects and reloads), and a dashboard
client only ever gets the newest aggregate (the ones it was too slow for are skipped).
The aggregate is computed once for every client, at most ``DASHBOARD_HZ`` times a second,
only while a dashboard client watches, and only when events arrived (or every
``DASHBOARD_IDLE_S``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec
import nats.errors

from agents.http.metrics import Metrics
from agents.wire.client import ApiClient
from agents.wire.output import served_log
from dtf_core import subjects
from dtf_core.errors import DTFError
from dtf_core.events.codec import Event, UndecodableEvent, decode, event_type, unpacked
from dtf_core.events.task import TaskSubmitted
from dtf_core.events.tests import TestsReported

log = logging.getLogger(__name__)

QUEUE_BATCHES = 256
DASHBOARD_HZ = 4.0
DASHBOARD_IDLE_S = 5.0
# what an event message carries besides its type, sequence, time and actor
FIELDS = ("task_id", "worker_id", "run_id", "attempt", "exit_code", "error", "reason", "name",
          "role", "holder", "term", "session")
Item = dict[str, Any]


def summarize(seq: int, subject: str, data: bytes) -> list[Item]:
    """A compact, JSON-ready view of one message's events (a submission's spec is reduced
    to its name, type and priority; the full event is `GET /api/tasks/{id}/events`). One
    item, but two for a lease that is also the submission (ADR 0018)."""
    try:
        event = decode(subject, data)
    except UndecodableEvent:
        return [{"seq": seq, "type": "undecodable", "subject": subject}]
    kind = subject.split(".")[2]
    return [_summary(seq, kind, e) for e in unpacked(event)]


def _summary(seq: int, kind: str, event: Event) -> Item:
    item: Item = {"seq": seq, "type": event_type(event), "kind": kind,
                  "time": getattr(event, "at", None), "actor": getattr(event, "actor", None)}
    for name in FIELDS:
        value = getattr(event, name, None)
        if value is not None and value != "":
            item[name] = value
    if isinstance(event, TaskSubmitted):
        item.update(name=event.spec.name, task_type=event.spec.type,
                    priority=event.spec.priority, group=event.spec.requirements.worker_group)
    elif isinstance(event, TestsReported):  # a batch of a run's tests: counts, and failures
        outcomes: dict[str, int] = {}
        for case in event.cases:
            outcomes[case.outcome] = outcomes.get(case.outcome, 0) + 1
        item.update(outcomes=outcomes, failures=[
            c.nodeid for c in event.cases if c.outcome in ("failed", "error", "crashed")][:20])
    return item


class Subscriber:
    """One event client: the events matching ``match``, in order, as JSON text, until it
    falls behind."""

    def __init__(self, match: Callable[[Item], bool] | None) -> None:
        self.match = match  # None: every event
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_BATCHES)
        self.behind = asyncio.Event()

    def offer(self, items: list[Item], everything: str) -> None:
        """``everything``: ``items`` as JSON, encoded once for all the unfiltered clients."""
        if self.behind.is_set():
            return
        if self.match is None:
            text = everything
        else:
            picked = [i for i in items if self.match(i)]
            if not picked:
                return
            text = msgspec.json.encode(picked).decode()
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.behind.set()  # its sender closes it: it reconnects and reloads


def matcher(params: Mapping[str, str]) -> Callable[[Item], bool] | None:
    """``task``, ``worker``, ``run``: one aggregate's events; ``types``: a comma list;
    ``kinds``: task, worker, run, auth, lead, tests, bench. None: no filter at all."""
    wanted = {k: params[k] for k in ("task", "worker", "run") if params.get(k)}
    types = set(filter(None, params.get("types", "").split(",")))
    kinds = set(filter(None, params.get("kinds", "").split(",")))
    if not (wanted or types or kinds):
        return None

    def match(item: Item) -> bool:
        return (all(item.get(f"{k}_id") == v for k, v in wanted.items())
                and (not types or item["type"] in types)
                and (not kinds or item.get("kind") in kinds))

    return match


async def follow(feed: Feed, pause: float = 1.0) -> None:
    """Run ``feed`` for good: the api restarting or the connection dropping only pauses it
    (its clients keep their sockets and get the events from where it resumes)."""
    while True:
        try:
            await feed.run()
        except* (DTFError, nats.errors.Error) as group:
            log.warning("the live feed stopped (%r); again in %.0fs", group.exceptions[0],
                        pause)
        await asyncio.sleep(pause)


class Feed:
    def __init__(self, api: ApiClient, metrics: Metrics | None = None) -> None:
        self.api = api
        self.metrics = metrics
        self.subscribers: set[Subscriber] = set()
        self.changed = asyncio.Event()
        self.snapshot: bytes = b"{}"
        self.version = 0
        self.published = asyncio.Condition()
        self.last_seq = 0
        self.watchers = 0  # dashboard clients: the aggregate is computed only for them
        self.watched = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow())
            tg.create_task(self._aggregate())

    async def _follow(self) -> None:
        if self.last_seq == 0:  # else resume where the feed stopped
            self.last_seq = (await self.api.status()).last_seq
        self.changed.set()  # what happened before the tail opened: in the next aggregate
        tail = served_log(self.api).tail([*subjects.STATE_EVENTS, "dtf.evt.tests.>"],
                                         self.last_seq + 1)
        async with tail:
            async for batch in tail:
                if not batch:  # the tail at its end after dropped records: nothing new
                    continue
                items = [i for r in batch for i in summarize(r.seq, r.subject, r.data)]
                self.last_seq = batch[-1].seq
                if self.metrics is not None:
                    self.metrics.observe(items)
                everything = msgspec.json.encode(items).decode() if self.subscribers else ""
                for sub in list(self.subscribers):
                    sub.offer(items, everything)
                self.changed.set()

    async def _aggregate(self) -> None:
        while True:
            await self.watched.wait()
            started = time.monotonic()
            try:
                self.snapshot = msgspec.json.encode(await dashboard(self.api))
            except DTFError as exc:  # the api restarting: say so, try again soon
                self.snapshot = msgspec.json.encode({"error": str(exc)})
            self.version += 1
            async with self.published:
                self.published.notify_all()
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), DASHBOARD_IDLE_S)
            await asyncio.sleep(max(0.0, 1 / DASHBOARD_HZ - (time.monotonic() - started)))

    def subscribe(self, match: Callable[[Item], bool] | None) -> Subscriber:
        sub = Subscriber(match)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    @contextlib.contextmanager
    def watching(self) -> Iterator[int]:
        """One dashboard client, for as long as it watches; yields the version to wait
        past (the aggregate is not kept while nobody watches: a first client waits for
        a fresh one)."""
        idle = self.watchers == 0
        self.watchers += 1
        self.watched.set()
        if idle:
            self.changed.set()
        try:
            yield self.version if idle else 0
        finally:
            self.watchers -= 1
            if not self.watchers:
                self.watched.clear()

    async def next_snapshot(self, seen: int) -> tuple[int, bytes]:
        """The newest aggregate after version ``seen`` (at once, if there is one)."""
        async with self.published:
            await self.published.wait_for(lambda: self.version > seen)
            return self.version, self.snapshot


async def dashboard(api: ApiClient) -> dict[str, Any]:
    """The dashboard's counts, aggregated here once for every client."""
    status, workers = await api.status(), await api.workers(heartbeats=False)
    by_state: dict[str, int] = {}
    by_scheduling: dict[str, int] = {}
    for w in workers:
        by_state[w.state] = by_state.get(w.state, 0) + 1
        by_scheduling[w.scheduling] = by_scheduling.get(w.scheduling, 0) + 1
    return {"status": status, "workers": {
        "by_state": by_state, "by_scheduling": by_scheduling,
        "slots": sum(w.slots for w in workers if w.state == "alive"),
        "running": sum(w.running for w in workers)}, "at": time.time()}
