"""Kill -9 a worker while it runs a task: the task is requeued and finishes exactly once
on another worker (a bounded smoke test; the full chaos suite is under -m chaos)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dtf_core.events.task import TaskLeased, TaskRequeued, TaskSucceeded
from dtf_core.spec import command_spec
from tests.gates import Gate
from tests.helpers import until
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio
PY = sys.executable


def spawn_worker(url: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DTF_HEARTBEAT_INTERVAL": "0.2",
           "DTF_DATA_DIR": str(log.parent / f"{worker_id}-data")}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [PY, "-m", "cli.main", "worker", "--id", worker_id, "--slots", "1", "--server", url],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent,
        )


async def test_sigkill_worker_task_finishes_once_elsewhere(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    gate = Gate(tmp_path / "gate")  # the task runs until the survivor has it
    script = (
        "import os\n"
        f"open({str(marker)!r}, 'a').write(os.environ.get('DTF_W', '?') + '\\n')\n"
        + gate.script()
    )
    async with stack(tmp_path, workers=0, heartbeat=0.2, misses=3) as h:
        victim = spawn_worker(h.url, "victim", tmp_path / "victim.log")
        try:
            async def registered() -> bool:
                return any(w.id == "victim" and w.state == "alive"
                           for w in await h.api.workers())

            await until(registered, 20, "the victim to register")
            res = await h.api.submit([command_spec([PY, "-c", script])])
            task_id = res.ids[0]
            await h.wait_status(task_id, {"running"})
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            survivor = spawn_worker(h.url, "survivor", tmp_path / "survivor.log")
            gate.open()
            try:
                row = await h.wait_status(task_id, {"succeeded", "failed"}, timeout=30)
            finally:
                survivor.terminate()
                survivor.wait(10)
        finally:
            if victim.poll() is None:
                victim.kill()
        assert row.status == "failed" or row.status == "succeeded"
        events = [e for _, e in await h.events(task_id)]
        leases = [e for e in events if isinstance(e, TaskLeased)]
        assert [lease.worker_id for lease in leases] == ["victim", "survivor"]
        assert any(isinstance(e, TaskRequeued) and "lost" in e.reason for e in events)
        finals = [e for e in events if isinstance(e, TaskSucceeded)]
        assert row.status == "succeeded", row
        assert len(finals) == 1 and finals[0].worker_id == "survivor"
