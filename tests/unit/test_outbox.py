from agents.worker.pytest.outbox import Outbox
from dtf_core.events.tests import TestCase


def case(n: int) -> TestCase:
    return TestCase(nodeid=f"t.py::test_{n}", outcome="passed")


def test_batches_keep_their_numbers_until_the_last_is_sent() -> None:
    box = Outbox("w1")
    key = ("t1", 7, 1)
    box.add(key, case(0), "log")
    first = box.take()
    assert [b.batch for b in first] == [0] and first[0].attempt == 1
    assert [b.batch for b in box.take()] == [0]  # a resend keeps its number
    box.add(key, case(1), "log")
    box.finished(key)  # the attempt ended with a case still unsent
    box.sent(1)
    assert [b.batch for b in box.take()] == [1]  # never number 0 again (deduplicated)
    box.sent(1)
    assert not box and box.numbers == {}
    assert box.take_lines() == {"log": ["PASSED t.py::test_0 (0.000s)\n",
                                        "PASSED t.py::test_1 (0.000s)\n"]}
