def test_lists():
    assert [1, 2, 3] == [1, 2, 4]


def test_dicts():
    # one item of each kind: pytest lists several differing items in set order (hash seed)
    assert {"a": 1, "b": 2, "c": [1, 2]} == {"a": 1, "b": 3, "d": [1, 2, 3]}


def test_strings():
    assert "the quick brown fox\njumps over\nthe lazy dog" == "the quick brown fox\njumped over\nthe lazy dog"


def test_long_sequences():
    assert list(range(100)) == list(range(1, 101))


def test_with_message():
    x = 3
    assert x % 2 == 0, f"{x} is odd"


class Thing:
    def __eq__(self, other):
        return False

    def __repr__(self):
        return "Thing()"


def test_custom_eq():
    assert Thing() == Thing()
