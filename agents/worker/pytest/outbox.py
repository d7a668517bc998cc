"""Per-test results waiting to be reported by a worker: batched per attempt, numbered once
(a resend keeps its number, so the api's duplicate window drops it), and capped in size."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from dtf_core import commands as cmds
from dtf_core.events.tests import TestCase

MAX_TEST_BYTES = 512 * 1024  # per report command; the server's max payload is 1 MiB
MAX_CASE_BYTES = 256 * 1024  # the session fits a test's reports in 192 KiB

AttemptKey = tuple[str, int, int]  # task id, fencing token, attempt number


def bounded(case: TestCase) -> TestCase:
    """A case small enough for one message. The session already cut captured output to
    fit; this is the last guard, and it keeps the outcome (the client shows the message in
    place of the reports)."""
    size = len(case.reports) + len(case.message) + len(case.warnings)
    if size <= MAX_CASE_BYTES:
        return case
    return msgspec.structs.replace(
        case, reports="", warnings="",
        message=f"{case.message[:1000]}[DTF: this test's reports were {size:,} bytes, over "
                f"the {MAX_CASE_BYTES:,} byte limit, and were dropped; its outcome stands]")


def log_line(case: TestCase) -> str:
    return f"{case.outcome.upper()} {case.nodeid} ({case.duration_s:.3f}s)\n"


@dataclass
class Outbox:
    worker_id: str
    cases: dict[AttemptKey, list[TestCase]] = field(default_factory=dict)
    numbers: dict[AttemptKey, int] = field(default_factory=dict)
    batches: list[cmds.TestBatch] = field(default_factory=list)  # numbered, not yet sent
    lines: dict[str, list[str]] = field(default_factory=dict)  # log subject -> lines
    ended: set[AttemptKey] = field(default_factory=set)
    size: int = 0  # bytes of the cases added since the last take

    def add(self, key: AttemptKey, case: TestCase, log_subject: str) -> None:
        case = bounded(case)
        self.cases.setdefault(key, []).append(case)
        self.lines.setdefault(log_subject, []).append(log_line(case))
        self.size += len(case.reports) + len(case.message) + len(case.warnings) + 200

    def __bool__(self) -> bool:
        return bool(self.cases or self.batches)

    def take(self) -> list[cmds.TestBatch]:
        """Number what finished since the last send, and return the batches to send now
        (all of them, up to the size cap); ``sent`` drops them once the api has them."""
        for key, cases in self.cases.items():
            task_id, fencing, attempt = key
            number = self.numbers.get(key, 0)
            self.numbers[key] = number + 1
            self.batches.append(cmds.TestBatch(task_id=task_id, worker_id=self.worker_id,
                                               fencing=fencing, attempt=attempt,
                                               batch=number, cases=cases))
        self.cases = {}
        self.size = 0
        out: list[cmds.TestBatch] = []
        size = 0
        for batch in self.batches:
            size += sum(len(c.reports) + len(c.message) + len(c.warnings) + 200
                        for c in batch.cases)
            if out and size > MAX_TEST_BYTES:
                break
            out.append(batch)
        return out

    def sent(self, count: int) -> None:
        del self.batches[:count]
        pending = {(b.task_id, b.fencing, b.attempt) for b in self.batches} | set(self.cases)
        for key in self.ended - pending:  # numbers of ended attempts with nothing left
            self.numbers.pop(key, None)
        self.ended &= pending

    def finished(self, key: AttemptKey) -> None:
        """The attempt has ended: once its last batch is sent, its numbering is dropped."""
        self.ended.add(key)

    def take_lines(self) -> dict[str, list[str]]:
        lines, self.lines = self.lines, {}
        return lines
