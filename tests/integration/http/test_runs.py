"""Runs over HTTP after a real `dtf run pytest`: the run is listed with its tasks by status,
and its test results are the ones pytest reported, filterable by outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.dist import Dist, secure_stack

pytestmark = pytest.mark.anyio


@pytest.fixture
async def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dist]:
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path, workers=1, http=True) as dist:
        yield dist


async def test_a_pytest_run_and_its_tests_over_http(dist: Dist) -> None:
    root = dist.suite("suite", {"tests/test_a.py": """
        def test_ok():
            pass

        def test_bad():
            assert 1 == 2
    """})
    code, out = await dist.run(root, "--dtf-run-name", "nightly")
    assert code == 1, out
    async with httpx.AsyncClient(base_url=dist.http or "", timeout=30, headers={
            "Authorization": f"Bearer {dist.token}"}) as rest:
        runs = (await rest.get("/api/runs")).json()["items"]
        run = next(r for r in runs if r["name"] == "nightly")
        assert run["tasks"] >= 1 and sum(run["statuses"].values()) == run["tasks"]
        tests = (await rest.get(f"/api/runs/{run['id']}/tests")).json()
        assert sorted((t["nodeid"], t["outcome"]) for t in tests["items"]) == [
            ("tests/test_a.py::test_bad", "failed"), ("tests/test_a.py::test_ok", "passed")]
        assert all(t["worker_id"] == "local-1" for t in tests["items"])
        failed = (await rest.get(f"/api/runs/{run['id']}/tests",
                                 params={"outcome": "failed"})).json()["items"]
        assert [t["nodeid"] for t in failed] == ["tests/test_a.py::test_bad"]
        pages, cursor = [], None
        while True:  # a page of one at a time, each read from where the last one ended
            got = (await rest.get(f"/api/runs/{run['id']}/tests", params={
                "limit": 1, **({"cursor": cursor} if cursor else {})})).json()
            pages.append([t["nodeid"] for t in got["items"]])
            cursor = got["next"]
            if cursor is None:
                break
        assert sorted(n for p in pages for n in p) == [
            "tests/test_a.py::test_bad", "tests/test_a.py::test_ok"]
        assert all(len(p) <= 1 for p in pages)
        assert (await rest.get(f"/api/runs/{run['id']}/tests",
                               params={"cursor": "x"})).status_code == 400
        assert (await rest.get("/api/runs/r-nope/tests")).status_code == 404
        assert (await rest.get("/api/runs", params={"cursor": "r-nope"})).status_code == 404
