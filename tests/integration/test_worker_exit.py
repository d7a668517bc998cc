"""A worker whose server is gone still stops on SIGTERM (systemd, docker stop, the
supervisor): at once, with exit status 0 and no traceback; its running tasks are requeued
by recovery when the server is back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agents.nats.server import NatsServer, free_port
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_stops_on_sigterm_while_its_server_is_gone(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    server.start()
    log = tmp_path / "worker.log"
    procs = []
    try:
        cmd = [sys.executable, "-m", "cli.main"]
        # in the test's own directory: the worker keeps its signing key under ./.dtf
        where = {"cwd": tmp_path, "env": {**os.environ, "PYTHONPATH": str(ROOT)}}
        procs.append(subprocess.Popen([*cmd, "agent", "control", "--insecure-dev", "--server",
                                       server.url], stderr=subprocess.DEVNULL, **where))
        with log.open("w") as out:
            worker = subprocess.Popen([*cmd, "worker", "--id", "w1", "--server", server.url],
                                      stderr=out, **where)
        procs.append(worker)
        eventually(lambda: "worker w1 ready" in log.read_text(), 30, "the worker to register")
        server.stop()
        worker.send_signal(signal.SIGTERM)  # noticed or not yet: at most the 5 s stop report
        assert worker.wait(15) == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()
