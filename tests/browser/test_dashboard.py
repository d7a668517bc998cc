"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright) on a
real secure stack: an anonymous visitor sees the login page; a manager sees tasks appear
and finish live and cancels one from the page; a reader cannot cancel. Screenshots go
to tmp_path, and to $DTF_SCREENSHOTS when set (CI keeps them)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
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
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
if CHROMIUM is None:
    pytest.skip("no Chromium here (apt install chromium); the browser tests need one",
                allow_module_level=True)


@pytest.fixture
async def dist(tmp_path: Path) -> AsyncIterator[Dist]:
    async with secure_stack(tmp_path, workers=1, http=True) as dist:
        yield dist


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            await chromium.close()


async def login_link(dist: Dist, role: str, sub: str) -> str:
    """What `dtf token issue --role ROLE --sub SUB --login` prints."""
    nc = await connect(dist.url, "test-admin", credential=dist.token)
    try:
        token = (await ApiClient(nc, credential=dist.token).issue_token(sub, role, 120)).token
    finally:
        await nc.close()
    return f"{dist.http}login?token={token}"


async def submit(dist: Dist, code: str) -> str:
    async with httpx.AsyncClient(base_url=dist.http or "", timeout=30, headers={
            "Authorization": f"Bearer {dist.token}"}) as rest:
        answer = await rest.post("/api/tasks", json={
            "type": "command", "name": "browser-test", "config": {"argv": [PY, "-c", code]}})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["ids"][0])


async def shoot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / "screenshots" / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("DTF_SCREENSHOTS")
    if keep:
        await asyncio.to_thread(keep_copy, path, Path(keep))


def keep_copy(path: Path, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, where / path.name)


def row(page: Any, task_id: str) -> Any:
    return page.locator(f'#tasks .row[data-task="{task_id}"]')


async def test_a_manager_watches_tasks_live_and_cancels_one_a_reader_cannot(
        dist: Dist, browser: Any, tmp_path: Path) -> None:
    anonymous = await browser.new_page()
    await anonymous.goto(dist.http)
    assert "dtf dashboard" in await anonymous.text_content("body")
    assert await anonymous.locator("#tasks").count() == 0  # no data, not even the tables
    await shoot(anonymous, tmp_path, "login")

    manager = await (await browser.new_context()).new_page()
    await manager.goto(await login_link(dist, "manager", "mia"))
    await manager.wait_for_selector('#workers .row >> text="local-1"')
    assert "mia (manager)" in await manager.text_content("#me")

    gate = Gate(tmp_path / "gate")  # the task runs until cancelled: the gate stays shut
    long_task = await submit(dist, gate.script())
    await row(manager, long_task).locator(".status-running").wait_for()  # live, no reload
    await row(manager, long_task).click()
    await manager.wait_for_selector("#detail:not([hidden])")
    await manager.locator("#explain li").first.wait_for()
    await shoot(manager, tmp_path, "running")

    reader = await (await browser.new_context()).new_page()
    await reader.goto(await login_link(dist, "reader", "rita"))
    await row(reader, long_task).click()
    await reader.locator("#explain li").first.wait_for()  # the task's detail has loaded
    assert await reader.locator("#cancel").is_disabled()
    refused = await reader.evaluate(
        """async (id) => (await fetch(`/api/tasks/${id}`, {method: "DELETE",
              headers: {"X-DTF-CSRF": "1"}})).status""", long_task)
    assert refused == 403

    await manager.locator("#cancel").click()
    await row(manager, long_task).locator(".status-cancelled").wait_for()
    await row(reader, long_task).locator(".status-cancelled").wait_for()  # both see it

    quick = await submit(dist, "print('done')")
    await row(manager, quick).locator(".status-succeeded").wait_for()
    await row(manager, quick).click()
    await manager.wait_for_selector('#output >> text="done"')

    # A benchmark ends; once projected, the page shows its series as a chart.
    async with httpx.AsyncClient(base_url=dist.http or "", timeout=30, headers={
            "Authorization": f"Bearer {dist.token}"}) as rest:
        answer = await rest.post("/api/tasks", json={"type": "benchmark", "name": "matmul",
                                 "config": {"batch_sizes": [4], "iterations": 3}})
        assert answer.status_code == 201, answer.text

        async def charted() -> bool:
            got = await rest.get("/api/trends")
            assert got.status_code == 200, got.text
            return bool(got.json()["series"])

        await until(charted, 60, "the benchmark's series in /api/trends")
    await manager.reload()
    await manager.wait_for_selector("#trends svg circle")
    assert "numpy-matmul" in await manager.locator("#trends").inner_text()
    await shoot(manager, tmp_path, "dashboard")
