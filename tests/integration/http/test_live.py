"""The WebSockets on a real secure stack: events as they are appended, the aggregate as
it changes, and the close codes for a missing or bad credential."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.dist import Dist, secure_stack

pytestmark = pytest.mark.anyio
PY = sys.executable


@pytest.fixture
async def dist(tmp_path: Path) -> AsyncIterator[Dist]:
    async with secure_stack(tmp_path, workers=1, http=True) as dist:
        yield dist


def ws_url(dist: Dist, path: str) -> str:
    assert dist.http is not None
    return dist.http.replace("http://", "ws://").rstrip("/") + path


async def next_json(ws: ClientConnection) -> Any:
    return json.loads(await ws.recv(decode=True))


async def test_events_arrive_as_a_task_runs_and_the_aggregate_follows(dist: Dist) -> None:
    auth = {"Authorization": f"Bearer {dist.token}"}
    async with connect(ws_url(dist, "/ws?kinds=task"), additional_headers=auth,
                       open_timeout=30) as events, \
            connect(ws_url(dist, "/ws/dashboard"), additional_headers=auth,
                    open_timeout=30) as board, \
            httpx.AsyncClient(base_url=dist.http or "", headers=auth, timeout=30) as rest:
        hello = await next_json(events)
        assert hello["type"] == "hello" and hello["seq"] >= 1
        first = await next_json(board)
        while first["workers"]["by_state"] != {"alive": 1}:  # bounded by the pytest timeout
            first = await next_json(board)
        before = first["status"]["tasks"].get("succeeded", 0)

        answer = await rest.post("/api/tasks", json={
            "type": "command", "config": {"argv": [PY, "-c", "pass"]}})
        task_id = answer.json()["ids"][0]
        seen: list[str] = []
        while "succeeded" not in seen:  # bounded by the pytest timeout
            for item in await next_json(events):
                assert item["kind"] == "task"
                if item["task_id"] == task_id:
                    seen.append(item["type"])
        assert seen == ["submitted", "leased", "started", "succeeded"]

        while True:  # the aggregate catches up with what the events said
            snapshot = await next_json(board)
            if snapshot["status"]["tasks"].get("succeeded", 0) == before + 1:
                break

        metrics = await rest.get("/metrics")  # the same events, counted and timed
        assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
        text = metrics.text
        assert "dtf_leases_total 1.0" in text
        assert 'dtf_task_total_seconds_count{outcome="succeeded"} 1.0' in text
        assert 'dtf_workers{state="alive"} 1.0' in text
        assert "dtf_report_resends 0.0" in text
        async with httpx.AsyncClient(base_url=dist.http or "") as anonymous:
            assert (await anonymous.get("/metrics")).status_code == 401


async def test_a_socket_without_a_good_credential_is_closed_with_a_code(dist: Dist) -> None:
    cookie = f"dtf_session={dist.token}"
    own = (dist.http or "").rstrip("/")
    async with connect(ws_url(dist, "/ws"), open_timeout=30, additional_headers={
            "Cookie": cookie, "Origin": own}) as ws:
        assert (await next_json(ws))["type"] == "hello"  # the page's own origin: admitted
    for headers, code in (({}, 4401), ({"Authorization": "Bearer forged"}, 4401),
                          ({"Cookie": cookie, "Origin": "https://evil.example"}, 4403)):
        async with connect(ws_url(dist, "/ws"), additional_headers=headers,
                           open_timeout=30) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
