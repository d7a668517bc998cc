"""`dtf workers` shows the workers that matter now: alive and lost ones; the stopped ones
(every autoscaled worker that went) only with --all, and says how many it left out."""

from __future__ import annotations

import pytest

from cli import render
from dtf_core.events.worker import Capabilities
from dtf_core.replies import WorkerRow


def row(wid: str, state: str) -> WorkerRow:
    return WorkerRow(id=wid, hostname="h", pid=1, session="s", state=state,
                     scheduling="open", slots=2, running=0, capabilities=Capabilities(),
                     last_seen=0.0)


ROWS = [row("w-alive", "alive"), row("w-gone", "stopped"), row("w-lost", "lost")]


def test_stopped_workers_are_left_out_and_counted(capsys: pytest.CaptureFixture[str]) -> None:
    render.workers_table(ROWS)
    text = capsys.readouterr().out
    assert "w-alive" in text and "w-lost" in text and "w-gone" not in text
    assert "1 stopped worker(s) not shown: --all lists them" in text


def test_all_lists_every_worker(capsys: pytest.CaptureFixture[str]) -> None:
    render.workers_table(ROWS, everything=True)
    text = capsys.readouterr().out
    assert all(w in text for w in ("w-alive", "w-gone", "w-lost")) and "not shown" not in text
