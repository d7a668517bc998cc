"""Every endpoint with every role, on a real secure stack: the role table of
docs/security-tokens.md holds over HTTP as it does over NATS."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agents.nats.connect import connect
from agents.wire.client import ApiClient
from tests.dist import Dist, secure_stack
from tests.gates import Gate
from tests.helpers import until

pytestmark = pytest.mark.anyio
PY = sys.executable
ROLES = ("anonymous", "worker", "reader", "manager", "admin")
READ = {"anonymous": 401, "worker": 403, "reader": 200, "manager": 200, "admin": 200}
CHANGE = {"anonymous": 401, "worker": 403, "reader": 403, "manager": 200, "admin": 200}


@pytest.fixture
async def dist(tmp_path: Path) -> AsyncIterator[Dist]:
    async with secure_stack(tmp_path, workers=1, http=True) as dist:
        yield dist


async def test_each_endpoint_answers_each_role_as_the_role_table_says(
        dist: Dist, tmp_path: Path) -> None:
    nc = await connect(dist.url, "test-admin", credential=dist.token)
    admin = ApiClient(nc, credential=dist.token)
    tokens = {"admin": dist.token,
              "manager": (await admin.issue_token("max", "manager", 600)).token,
              "reader": (await admin.issue_token("rita", "reader", 600)).token,
              "worker": (await admin.issue_token("w9", "worker", 600, "w9")).token}
    await nc.close()
    clients = {role: httpx.AsyncClient(base_url=dist.http or "", timeout=30, headers={
        "Authorization": f"Bearer {tokens[role]}"} if role in tokens else {}) for role in ROLES}
    try:
        gate = Gate(tmp_path / "gate")  # the tasks run until cancelled: the gate stays shut
        spec = {"type": "command", "config": {"argv": gate.argv()}}
        made = (await clients["admin"].post("/api/tasks", json={"tasks": [spec, spec]})).json()
        task, other = made["ids"]
        run = made["run_id"]
        reads = ["/api/status", "/api/dashboard", "/api/workers", "/api/workers/local-1",
                 "/api/tasks", f"/api/tasks/{task}", f"/api/tasks/{task}/events",
                 f"/api/tasks/{task}/explain", f"/api/tasks/{task}/logs",
                 f"/api/runs/{run}/tasks", f"/api/runs/{run}/tests", "/api/runs",
                 "/api/tests/flaky", "/api/trends", "/metrics"]
        wrong: list[str] = []

        def check(role: str, what: str, answer: httpx.Response, want: int) -> None:
            if answer.status_code != want:
                wrong.append(f"{role} {what}: {answer.status_code}, not {want}: "
                             f"{answer.text[:120]}")
            elif want in (401, 403) and "/metrics" not in what:
                assert answer.json()["error"]["code"] == {401: "unauthenticated",
                                                          403: "forbidden"}[want]

        for role in ROLES:
            for path in reads:
                check(role, f"GET {path}", await clients[role].get(path), READ[role])
            check(role, "GET /api/me", await clients[role].get("/api/me"),
                  401 if role == "anonymous" else 200)
            check(role, "POST /api/tasks", await clients[role].post("/api/tasks", json={
                "type": "noop"}), {**CHANGE, "manager": 201, "admin": 201}[role])
            for action in ("cordon", "uncordon"):
                check(role, f"POST {action}", await clients[role].post(
                    f"/api/workers/local-1/{action}"), CHANGE[role])
        for role in ("anonymous", "worker", "reader", "manager"):  # the cancels last
            check(role, "DELETE task", await clients[role].delete(f"/api/tasks/{task}"),
                  CHANGE[role])

        async def cancelled() -> bool:
            answer = await clients["admin"].get(f"/api/tasks/{task}")
            return bool(answer.json()["status"] == "cancelled")

        await until(cancelled, 30, "the manager's cancel to end the task")
        check("admin", "DELETE ended task", await clients["admin"].delete(f"/api/tasks/{task}"),
              409)
        for role in ROLES:
            check(role, "POST run cancel",
                  await clients[role].post(f"/api/runs/{run}/cancel"), CHANGE[role])
        assert wrong == []
        history = (await clients["admin"].get(f"/api/tasks/{other}/events")).json()["items"]
        asked = [h["actor"] for h in history if h["type"] in ("cancel_requested", "cancelled")]
        assert asked[0] == "max"  # the run's cancel was the manager's, by name
    finally:
        for client in clients.values():
            await client.aclose()
