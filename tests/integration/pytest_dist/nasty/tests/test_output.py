import sys

import pytest


def test_big_output_passes():
    print("p" * 300_000)


def test_big_output_fails():
    print("f" * 300_000)
    sys.stderr.write("e" * 100_000)
    assert False, "failed after a lot of output"


def test_stderr_and_stdout():
    print("to stdout")
    print("to stderr", file=sys.stderr)
    assert 1 == 2


def test_capsys(capsys):
    print("hello")
    out, _ = capsys.readouterr()
    assert out == "hello\n"


def test_sys_exit():
    sys.exit(3)


def test_skip_inside():
    pytest.skip("skipped from inside")


@pytest.mark.skipif(True, reason="never here")
def test_skipif():
    pass


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0


@pytest.mark.xfail(reason="fixed already")
def test_xpass():
    pass


@pytest.mark.xfail(reason="must fail", strict=True)
def test_xpass_strict():
    pass


@pytest.mark.slow
def test_marked():
    pass


def test_warns():
    import warnings

    warnings.warn("careful with this", UserWarning)


def test_deprecation_is_an_error():
    import warnings

    warnings.warn("old api", DeprecationWarning)
