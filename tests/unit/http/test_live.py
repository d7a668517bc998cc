"""The live feed's pure parts: what an event message carries, the filters, and a slow
client falling behind without holding anything up."""

from __future__ import annotations

from agents.http.live import QUEUE_BATCHES, Subscriber, matcher, summarize
from dtf_core.events.codec import encode, subject_of
from dtf_core.events.task import TaskLeased, TaskSubmitted, with_submission
from dtf_core.spec import command_spec


def submitted(task_id: str) -> tuple[str, bytes]:
    event = TaskSubmitted(task_id=task_id, at=1.0, actor="ann",
                          spec=command_spec(["true"], name="n", priority=3))
    return subject_of(event), encode(event)


def test_a_submission_is_summarised_without_its_spec() -> None:
    subject, data = submitted("t-1")
    [item] = summarize(7, subject, data)
    assert item == {"seq": 7, "type": "submitted", "kind": "task", "time": 1.0, "actor": "ann",
                    "task_id": "t-1", "name": "n", "task_type": "command", "priority": 3,
                    "group": None}
    [bad] = summarize(8, "dtf.evt.task.t-2.submitted", b"junk")
    assert bad["type"] == "undecodable"


def test_a_lease_that_is_the_submission_shows_as_both() -> None:
    """ADR 0018: the feed, the dashboard and the metrics see the usual two events."""
    submission = TaskSubmitted(task_id="t-1", at=1.0, actor="ann",
                               spec=command_spec(["true"], name="n", priority=3))
    lease = TaskLeased(task_id="t-1", at=1.0, actor="scheduler", worker_id="w",
                       session="s", attempt=1, spec=submission.spec)
    both = with_submission(lease, submission)
    items = summarize(9, subject_of(both), encode(both))
    assert [(i["seq"], i["type"], i["actor"]) for i in items] == [
        (9, "submitted", "ann"), (9, "leased", "scheduler")]
    [submitted_item] = summarize(9, *submitted("t-1")[0:2])
    assert items[0] == submitted_item | {"seq": 9}
    assert items[1] == summarize(9, subject_of(lease), encode(lease))[0]


def test_filters_pick_an_aggregate_types_and_kinds() -> None:
    items = [{"type": "submitted", "kind": "task", "task_id": "a"},
             {"type": "leased", "kind": "task", "task_id": "b", "worker_id": "w"},
             {"type": "registered", "kind": "worker", "worker_id": "w"}]
    def pick(params: dict[str, str]) -> list[dict[str, str]]:
        match = matcher(params)
        assert match is not None
        return [i for i in items if match(i)]

    assert matcher({}) is None  # every event: the batch encoded once for all such clients
    assert pick({"task": "a"}) == items[:1]
    assert pick({"worker": "w"}) == items[1:]
    assert pick({"types": "leased,registered"}) == items[1:]
    assert pick({"kinds": "worker"}) == items[2:]


def test_a_client_that_falls_behind_is_marked_and_never_blocks_the_feed() -> None:
    sub = Subscriber(None)
    for i in range(QUEUE_BATCHES):
        sub.offer([{"seq": i}], f'[{{"seq":{i}}}]')
    assert not sub.behind.is_set()
    sub.offer([{"seq": QUEUE_BATCHES}], "[]")  # one more than it holds: returns at once
    assert sub.behind.is_set() and sub.queue.qsize() == QUEUE_BATCHES
    picky = Subscriber(lambda item: item["seq"] == 2)
    picky.offer([{"seq": 1}], "unused")  # nothing it wants: nothing queued
    picky.offer([{"seq": 1}, {"seq": 2}], "unused")
    assert picky.queue.qsize() == 1 and picky.queue.get_nowait() == '[{"seq":2}]'


def test_the_aggregate_is_kept_only_while_a_dashboard_watches() -> None:
    from agents.http.live import Feed

    feed = Feed(api=None)  # type: ignore[arg-type]  # watching needs no api
    feed.version = 7  # an aggregate from before: stale by now
    assert not feed.watched.is_set()
    with feed.watching() as first:
        assert first == 7 and feed.watched.is_set() and feed.changed.is_set()
        with feed.watching() as second:
            assert second == 0  # the aggregate is being kept: the current one will do
        assert feed.watched.is_set()
    assert not feed.watched.is_set() and feed.watchers == 0
