"""The REST API on a real secure stack (`dtf up`'s HTTP agent as a child process): each
endpoint with each role, and each error code, as a program (bearer) and as a browser
(the session cookie from a login link) sees them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.nats.connect import connect
from agents.wire.client import ApiClient
from tests.dist import Dist, secure_stack
from tests.gates import Gate
from tests.helpers import until

pytestmark = pytest.mark.anyio
PY = sys.executable


@dataclass
class Rest:
    dist: Dist
    admin: ApiClient
    url: str

    def as_(self, token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def token(self, role: str, sub: str) -> str:
        return (await self.admin.issue_token(sub, role, 600)).token


@pytest.fixture
async def rest(tmp_path: Path) -> AsyncIterator[Rest]:
    async with secure_stack(tmp_path, workers=1, http=True) as dist:
        assert dist.http is not None
        nc = await connect(dist.url, "test-admin", credential=dist.token)
        try:
            yield Rest(dist, ApiClient(nc, credential=dist.token), dist.http)
        finally:
            await nc.close()


def error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def command(*argv: str, name: str = "") -> dict[str, Any]:
    return {"type": "command", "name": name, "config": {"argv": [PY, *argv]}}


async def finished(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        found.update((await http.get(f"/api/tasks/{task_id}")).json())
        return found.get("status") in ("succeeded", "failed", "cancelled")

    await until(done, 60, f"task {task_id} to end")
    return found


async def test_every_endpoint_as_admin_and_each_error_code(rest: Rest) -> None:
    async with rest.as_(None) as anon, rest.as_(rest.dist.token) as admin, \
            rest.as_("not-a-token") as forged:
        assert (await anon.get("/health")).json()["status"] == "ok"
        assert "no such path" in error(await anon.get("/nope"), 404, "not_found")
        error(await anon.get("/api/status"), 401, "unauthenticated")
        error(await forged.get("/api/status"), 401, "unauthenticated")

        ok = await admin.post("/api/tasks", json=command("-c", "print('hi')", name="hello"))
        assert ok.status_code == 201, ok.text
        task_id = ok.json()["ids"][0]
        task = await finished(admin, task_id)
        assert task["status"] == "succeeded" and task["name"] == "hello"
        events = (await admin.get(f"/api/tasks/{task_id}/events")).json()["items"]
        assert [e["type"] for e in events] == ["submitted", "leased", "started", "succeeded"]
        assert (await admin.get(f"/api/tasks/{task_id}/explain")).json()["lines"]
        output = (await admin.get(f"/api/tasks/{task_id}/logs")).json()
        assert "".join(c["text"] for c in output["chunks"]) == "hi\n"
        assert output["chunks"][0]["stream"] == "stdout" and not output["truncated"]

        batch = await admin.post("/api/tasks", json={
            "tasks": [command("-c", "pass", name=f"t{i}") for i in range(3)],
            "run_name": "nightly"})
        assert batch.status_code == 201 and len(batch.json()["ids"]) == 3
        for i in batch.json()["ids"]:
            await finished(admin, i)
        seen, cursor = [], None
        while True:  # pages of two, newest change first, each task once
            page = (await admin.get("/api/tasks", params={
                "limit": 2, **({"cursor": cursor} if cursor else {})})).json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert sorted(seen) == sorted([task_id, *batch.json()["ids"]])
        run_id = batch.json()["run_id"]
        run_page = (await admin.get(f"/api/runs/{run_id}/tasks")).json()["items"]
        assert sorted(t["id"] for t in run_page) == sorted(batch.json()["ids"])
        only = (await admin.get("/api/tasks", params={"status": "succeeded"})).json()
        assert {t["status"] for t in only["items"]} == {"succeeded"}

        status = (await admin.get("/api/status")).json()
        assert status["tasks"]["succeeded"] == 4 and status["workers_alive"] == 1
        board = (await admin.get("/api/dashboard")).json()
        assert board["workers"]["by_state"] == {"alive": 1}
        workers = (await admin.get("/api/workers")).json()["items"]
        assert [w["id"] for w in workers] == ["local-1"]
        one = (await admin.get("/api/workers/local-1")).json()
        assert one["capabilities"]["cpu_count"] >= 1 and one["slots"] == 1

        async def beaten() -> bool:  # its load, from its newest heartbeat
            load = (await admin.get("/api/workers/local-1")).json()["load"]
            return load is not None and load["report_resends"] == 0 \
                and 0 <= load["cpu_percent"] <= 100 and load["rss_mb"] > 0

        await until(beaten, 20, "a heartbeat with the worker's load")
        cordoned = await admin.post("/api/workers/local-1/cordon", json={"reason": "test"})
        assert cordoned.json()["scheduling"] == "cordoned", cordoned.text
        assert (await admin.post("/api/workers/local-1/uncordon")).json()["scheduling"] == "open"

        error(await admin.get("/api/tasks/no..such"), 400, "invalid")
        error(await admin.get("/api/tasks", params={"limit": "0"}), 400, "invalid")
        error(await admin.get("/api/tasks", params={"cursor": "zzz"}), 400, "invalid")
        error(await admin.get("/api/tests/flaky", params={"days": "soon"}), 400, "invalid")
        assert (await admin.get("/api/tests/flaky")).json() == {"items": [], "next": None}
        error(await admin.post("/api/tasks", content=b"{nope"), 400, "invalid")
        error(await admin.post("/api/tasks", json={"type": "rocket"}), 400, "invalid")
        error(await admin.get("/api/tasks/t-unknown"), 404, "not_found")
        error(await admin.delete("/api/tasks/t-unknown"), 404, "not_found")
        error(await admin.get("/api/workers/ghost"), 404, "not_found")
        error(await admin.post("/api/workers/local-1/explode"), 404, "not_found")
        error(await admin.put("/api/tasks"), 405, "method_not_allowed")
        ended = await admin.delete(f"/api/tasks/{task_id}")
        assert ended.status_code in (409, 200), ended.text  # see the api: ended stays ended
        if ended.status_code == 200:
            assert ended.json()["status"] == "succeeded"

        spec = (await anon.get("/openapi.json")).json()
        assert {"/api/tasks", "/api/tasks/{task_id}", "/api/workers/{worker_id}/{action}",
                "/health"} <= set(spec["paths"])
        assert "TaskSummary" in spec["components"]["schemas"]


async def test_a_reader_reads_a_manager_submits_and_cancels_and_revocation_ends_it(
        rest: Rest, tmp_path: Path) -> None:
    reader_token = await rest.token("reader", "rita")
    gate = Gate(tmp_path / "gate")  # the task runs until cancelled: the gate stays shut
    async with rest.as_(reader_token) as reader, \
            rest.as_(await rest.token("manager", "max")) as manager:
        long = await manager.post("/api/tasks", json=command("-c", gate.script()))
        assert long.status_code == 201, long.text
        task_id = long.json()["ids"][0]
        assert (await reader.get(f"/api/tasks/{task_id}")).status_code == 200
        assert (await reader.get("/api/workers")).status_code == 200
        error(await reader.post("/api/tasks", json=command("-c", "pass")), 403, "forbidden")
        error(await reader.delete(f"/api/tasks/{task_id}"), 403, "forbidden")
        error(await reader.post("/api/workers/local-1/drain"), 403, "forbidden")
        cancelled = await manager.delete(f"/api/tasks/{task_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert (await finished(manager, task_id))["status"] == "cancelled"

        claims = (await rest.admin.task(task_id)).history[0]
        assert claims.actor == "max"  # the event's actor is the caller, not the HTTP agent

        jti = _jti(reader_token)
        await rest.admin.revoke_token(jti, "test")

        async def refused() -> bool:
            return (await reader.get("/api/status")).status_code == 401

        await until(refused, 20, "the revoked reader to be refused")


async def test_a_login_link_opens_a_cookie_session_that_resists_cross_site_changes(
        rest: Rest) -> None:
    mia = await rest.token("manager", "mia")
    nc = await connect(rest.dist.url, "mia", credential=mia)
    try:  # what `dtf dashboard` does: a short-lived token refreshed from the caller's own
        link_token = (await ApiClient(nc, credential=mia).refresh_token(120)).token
    finally:
        await nc.close()
    async with rest.as_(None) as browser:
        login = await browser.get("/login", params={"token": link_token})
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await browser.get("/api/status")).status_code == 200  # the cookie is sent

        body = command("-c", "pass")
        error(await browser.post("/api/tasks", json=body), 403, "forbidden")  # no header
        error(await browser.post("/api/tasks", json=body, headers={
            "x-dtf-csrf": "1", "origin": "https://evil.example"}), 403, "forbidden")
        error(await browser.post("/api/tasks", json=body, headers={
            "x-dtf-csrf": "1", "sec-fetch-site": "cross-site"}), 403, "forbidden")
        ok = await browser.post("/api/tasks", json=body, headers={
            "x-dtf-csrf": "1", "origin": rest.url.rstrip("/")})
        assert ok.status_code == 201, ok.text
        actor = (await rest.admin.task(ok.json()["ids"][0])).history[0].actor
        assert actor == "mia"

        out = await browser.post("/logout", headers={"x-dtf-csrf": "1"})
        assert out.status_code == 204
        error(await browser.get("/api/status"), 401, "unauthenticated")
        error(await browser.get("/login", params={"token": "forged"}), 401, "unauthenticated")


def _jti(token: str) -> str:
    from agents.auth.server_auth import unverified_claims

    claims = unverified_claims(token)
    assert claims is not None
    return str(claims["jti"])
