"""Custom items from a conftest: `*.check` files hold one check per line."""
import pytest


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".check":
        return CheckFile.from_parent(parent, path=file_path)


class CheckFile(pytest.File):
    def collect(self):
        for i, line in enumerate(self.path.read_text().splitlines()):
            if line.strip():
                yield CheckItem.from_parent(self, name=f"line{i + 1}", spec=line.strip())


class CheckItem(pytest.Item):
    def __init__(self, *, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def runtest(self):
        left, right = self.spec.split("==")
        if eval(left) != eval(right):  # noqa: S307 -- the suite's own data
            raise CheckFailure(self.spec)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CheckFailure):
            return f"check failed: {excinfo.value.args[0]}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"check: {self.name}"


class CheckFailure(Exception):
    pass


@pytest.fixture(scope="module")
def module_resource():
    return {"setups": 1}
