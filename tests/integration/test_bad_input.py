"""Bad input gets a clear error, never a crash or data loss."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.errors import MaxPayloadError

from dtf_core import commands as cmds
from dtf_core.errors import InvalidInput
from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL
from tests.helpers import until
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio
BAD_IDS = ["a.b", "a*", "a>", "a b", "", "x" * 65, "ａbc", "tаsk"]


async def test_bad_ids_are_refused_before_any_subject(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        for bad in BAD_IDS:
            with pytest.raises(InvalidInput):
                await h.api.cancel(bad)
            with pytest.raises(InvalidInput):
                await h.api.task(bad)
            with pytest.raises(InvalidInput):
                await h.api.call(cmds.SubmitTasks(tasks=[TaskSpec(type="noop")], run_id=bad))
        assert [e for _, e in await h.events()] == []


async def test_malformed_events_are_dead_lettered_and_agents_go_on(tmp_path: Path) -> None:
    async with stack(tmp_path) as h:
        js = h.nc.jetstream()
        await js.publish("dtf.evt.task.x1.submitted", b"\xff\x00 not msgpack")
        await js.publish("dtf.evt.task.x2.submitted", b"\x81\xa4type\xa9submitted")
        await js.publish("dtf.evt.nonsense.x3.thing", b"{}")
        res = await h.api.submit([TaskSpec(type="noop")])
        row = await h.wait_status(res.ids[0], TERMINAL)
        assert row.status == "succeeded"
        # the api and the scheduler fold the state aggregates (task, worker, run, auth): each
        # dead-letters the two bad task events; the unknown aggregate is outside their filters
        async def dead_lettered() -> bool:
            info = await js.stream_info("DTF_DLQ", subjects_filter="dtf.dlq.>")
            per_agent = info.state.subjects or {}
            return per_agent.get("dtf.dlq.api") == 2 and per_agent.get("dtf.dlq.scheduler") == 2

        await until(dead_lettered, 10, "2 dead letters from the api and the scheduler")
        msg = await js.get_msg("DTF_DLQ", 1)
        assert msg.headers is not None and msg.headers["Dtf-Subject"].startswith("dtf.evt.")
        assert "undecodable" in msg.headers["Dtf-Error"]


async def test_oversized_payloads_are_refused(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        huge = TaskSpec(type="command", config={"argv": ["echo", "x" * 70_000]})
        with pytest.raises(InvalidInput, match="larger than"):
            await h.api.submit([huge])
        with pytest.raises(MaxPayloadError):
            await h.nc.request("dtf.cmd.task.submit", b"x" * (2 * 1024 * 1024), timeout=2)
        # garbage that fits is answered with a clear refusal, not silence
        reply = await h.nc.request("dtf.cmd.task.submit", b"\x93garbage", timeout=2)
        decoded = cmds.decode_reply(reply.data)
        assert not decoded.ok and decoded.code == "invalid"
        assert (await h.api.status()).last_seq == 0


async def test_unsupported_types_are_refused_not_simulated(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        with pytest.raises(InvalidInput, match="Invalid enum value 'batch'"):
            await h.api.submit([TaskSpec(type="batch")])  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="choose one of"):  # a benchmark runs for real
            await h.api.submit([TaskSpec(type="benchmark", config={
                "workload": "numpy-matmul", "command": ["bench"]})])
        with pytest.raises(InvalidInput, match="invalid test config"):
            await h.api.submit([TaskSpec(type="test")])  # a test task names its node ids
        traversal = TaskSpec(type="test", config={"node_ids": ["../../etc/passwd::x"]})
        with pytest.raises(InvalidInput, match="relative path inside the root"):
            await h.api.submit([traversal])


def test_run_without_pytest_and_an_unknown_status_are_usage_errors() -> None:
    import subprocess
    import sys

    def dtf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                              text=True, timeout=60)

    for args, code in ((("run",), 2), (("run", "--help"), 0), (("run", "nose"), 2)):
        out = dtf(*args)
        assert out.returncode == code and "dtf run pytest" in out.stderr, out
        assert "Traceback" not in out.stderr
    out = dtf("tasks", "--status", "pending")
    assert out.returncode == 2 and "'queued'" in out.stderr and "Traceback" not in out.stderr
