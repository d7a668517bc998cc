import pytest

import pkg.calc

CALLS = []


@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")


@pytest.fixture
def broken_teardown():
    yield 1
    raise RuntimeError("teardown broke")


@pytest.fixture(scope="class")
def per_class(request):
    CALLS.append(request.cls.__name__)
    return len(CALLS)


def test_setup_error(broken_setup):
    pass


def test_teardown_error(broken_teardown):
    assert broken_teardown == 1


def test_module_fixture(module_resource):
    module_resource["setups"] += 1
    assert module_resource["setups"] == 2


def test_module_fixture_again(module_resource):
    # the same module-scoped object: the test before ran first, in this process
    assert module_resource["setups"] == 2


class TestA:
    def test_one(self, per_class):
        assert per_class == 1

    def test_two(self, per_class):
        assert per_class == 1


def test_tmp_path(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert (tmp_path / "f.txt").read_text() == "x"
    assert len(list(tmp_path.iterdir())) == 1


def test_monkeypatch_module_global(monkeypatch):
    monkeypatch.setattr(pkg.calc, "MODE", "patched")
    assert pkg.calc.MODE == "patched"


def test_global_restored():
    assert pkg.calc.MODE == "normal"


def test_unregistered_fixture(no_such_fixture):
    pass


def test_cache_fixture(cache):
    cache.set("nasty/seen", True)
    assert cache.get("nasty/seen", None) is True


@pytest.mark.parametrize("value", [1, "two", (3,), None, "a b\\c \u00e9" * 40])
def test_params(value):
    assert value != 2
