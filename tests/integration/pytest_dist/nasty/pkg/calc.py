"""Doctests, collected with --doctest-modules.

>>> add(2, 2)
4
"""

MODE = "normal"  # a library-wide mode a test may switch


def add(a, b):
    """
    >>> add(1, 1)
    2
    >>> add(1, 2)  # a failing doctest
    4
    """
    return a + b
