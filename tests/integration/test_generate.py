"""`dtf generate` and `dtf templates` as a user runs them, against a real stack: a test
template stored (twice: two versions), a model mapped to its family, and the plan submitted
as one run whose tasks run in the DAG's order and all succeed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtf_core.events.task import TaskLeased, TaskSucceeded
from tests.integration.harness import Harness, stack
from tests.integration.test_report import dtf

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

SMOKE = {"type": "command", "name": "smoke ${model_name}",
         "config": {"argv": ["python", "-c", "print('${model_name} runs on ${hardware_type}')"]}}


async def test_a_generated_plan_runs_in_its_order(tmp_path: Path) -> None:
    async with stack(tmp_path, slots=2) as h:
        await run(h, tmp_path)


async def run(h: Harness, tmp_path: Path) -> None:
    store = str(tmp_path / "t.duckdb")
    (tmp_path / "smoke.json").write_text(json.dumps(SMOKE))
    for version in (1, 2):
        added = await dtf(h, tmp_path, "templates", "add", "smoke.json", "--kind", "test",
                          "--family", "text", "--templates", store)
        assert added.returncode == 0, added.stderr
        assert f"template smoke version {version}" in added.stdout
    listed = await dtf(h, tmp_path, "templates", "list", "--json", "--templates", store)
    assert json.loads(listed.stdout) == [{"id": "smoke", "version": 2, "family": "text",
                                          "hardware": "*", "kind": "test"}]
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "benchmark", "config": {"batch_sizes": ["${model_name}"]}}')
    refused = await dtf(h, tmp_path, "templates", "add", str(bad), "--templates", store)
    assert refused.returncode == 2 and "template bad" in refused.stderr
    assert (await dtf(h, tmp_path, "templates", "map", "acme/x1", "text", "--templates",
                      store)).returncode == 0

    shown = await dtf(h, tmp_path, "generate", "--model", "acme/x1", "--batch-sizes", "2,1",
                      "--templates", store)
    assert shown.returncode == 0, shown.stderr
    assert "acme/x1: text (model_mapping); 3 tasks" in shown.stdout

    sent = await dtf(h, tmp_path, "generate", "--model", "acme/x1", "--batch-sizes", "2,1",
                     "--templates", store, "--submit", "--json")
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["family"] == "text" and answer["run_id"]
    test_id, b1, b2 = sorted(answer["ids"], key=lambda i: ("test" not in i, i))
    assert test_id.endswith("-cpu-test") and b1.endswith("-b1") and b2.endswith("-b2")
    for task_id in (test_id, b1, b2):
        assert (await h.wait_status(task_id, {"succeeded", "failed"}, 120)).status == \
            "succeeded"
    leased = {e.task_id: s for s, e in await h.events() if isinstance(e, TaskLeased)}
    done = {e.task_id: s for s, e in await h.events() if isinstance(e, TaskSucceeded)}
    assert done[test_id] < leased[b1] and done[b1] < leased[b2]  # the DAG's order
