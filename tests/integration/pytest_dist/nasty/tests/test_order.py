"""Order-dependent module state: each test needs the one before it, in this process.

And a library-wide mode that a test switches on: the next run (warm) must not see it."""
import pkg.calc

STATE = []


def test_first():
    assert pkg.calc.MODE == "normal", "a previous run left the mode switched"
    pkg.calc.MODE = "switched"  # left behind on purpose
    STATE.append(1)


def test_second():
    assert STATE == [1]
    STATE.append(2)


def test_third():
    assert STATE == [1, 2]
