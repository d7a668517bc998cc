"""Per-test results of pytest tasks. Subjects: ``dtf.evt.tests.<run_id>.reported.<task_id>``.

A worker reports the tests of a chunk as they finish, in batches (whatever finished during
the previous round trip), so followers see them live. Each case keeps pytest's own
serialised reports (setup, call and teardown), so the client replays them through pytest's
hooks and prints exactly what pytest would.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from msgspec import Struct

# How a worker says, in a test task's error, that the chunk's pytest session could not start
# (exit code 3 or 4, as pytest's) or that a test called pytest.exit() (its return code):
# the run stops with that message, as pytest would, instead of failing each test.
SESSION_FAILED = "pytest could not start"
SESSION_EXIT = "pytest.exit: "

TestOutcome = Literal["passed", "failed", "skipped", "error", "xfailed", "xpassed", "crashed"]


class TestCase(Struct, frozen=True, kw_only=True, omit_defaults=True):
    __test__: ClassVar[bool] = False  # not a pytest test class
    nodeid: str
    outcome: TestOutcome
    duration_s: float = 0.0
    # pytest's serialised TestReports of the item (JSON text, from
    # pytest_report_to_serializable): a list, or packed as {"c": what the reports share,
    # "p": [what each adds]} (report i is {**c, **p[i]}); empty for a crash, which has
    # ``message`` instead.
    reports: str = ""
    message: str = ""
    # warnings the test raised, as pytest-xdist serialises them (JSON text), so the run's
    # "warnings summary" is pytest's own
    warnings: str = ""


class TestsEventBase(Struct, frozen=True, kw_only=True, tag_field="type"):
    __test__: ClassVar[bool] = False  # not a pytest test class
    run_id: str
    task_id: str
    at: float
    actor: str


class TestsReported(TestsEventBase, frozen=True, kw_only=True, tag="reported"):
    __test__: ClassVar[bool] = False  # not a pytest test class
    worker_id: str
    attempt: int
    fencing: int
    batch: int  # the worker's counter per attempt: a resent batch has the same number
    cases: tuple[TestCase, ...]


TestsEvent = TestsReported
