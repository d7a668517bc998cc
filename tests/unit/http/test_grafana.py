"""The sample Grafana dashboard queries only metrics the HTTP agent exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from agents.http.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "dtf-dashboard.json"


def test_every_panel_names_a_metric_we_expose() -> None:
    m = Metrics()
    m.observe([{"type": "submitted", "kind": "task", "task_id": "a", "time": 1.0},
               {"type": "succeeded", "kind": "task", "task_id": "a", "time": 2.0}])
    m.queue_depth.labels("").set(0)
    m.tasks.labels("queued").set(0)
    m.workers.labels("alive").set(0)
    exposed = set(re.findall(r"^(dtf_\w+?)(?:\{| )", generate_latest(m.registry).decode(), re.M))
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {name for p in panels for t in p["targets"]
            for name in re.findall(r"dtf_\w+", t["expr"])}
    assert used and used <= exposed, used - exposed
