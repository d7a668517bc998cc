"""Browser tasks on a real stack (a real nats-server, in-process agents) with Debian's
headless Chromium: pages and modules that pass and fail, their console as output, a fresh
context per task (storage not shared), the browser recycled after N tasks, and a browser
killed mid-task: the attempt fails saying so, the retry runs on a new browser."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from agents.log.jetstream import JetStreamLog
from agents.worker.agent import WorkerAgent
from agents.worker.browser.cdp import Chromium, find_chromium
from agents.worker.browser.pool import BrowserPool
from cli.client_cmds import _with_packs
from dtf_core import subjects
from dtf_core.browser_shards import shard_run
from dtf_core.events.task import TaskRequeued, TaskStarted
from dtf_core.spec import TaskSpec, validate_spec
from dtf_core.task import TERMINAL
from tests.helpers import until
from tests.integration.harness import Harness, stack

pytestmark = pytest.mark.anyio
if find_chromium() is None:
    pytest.skip("no Chromium here (apt install chromium); browser tasks need one",
                allow_module_level=True)

PASS = "<script>console.log('hello from the page'); window.__dtf_result = {passed: true}" \
       "</script>"
FAIL = "<script>console.error('about to fail'); dtf.report({passed: false, " \
       "details: 'expected 2, got 3'})</script>"
SET = "<script>localStorage.setItem('seen', 'task one'); __dtf_result = {passed: true}</script>"
READ = "<script>const v = localStorage.getItem('seen'); __dtf_result = " \
       "{passed: v === null, details: 'saw ' + v}</script>"
# Hangs until gate.txt is in its directory: the first attempt is killed, the retry passes.
GATED = "<script>fetch('/gate.txt').then(r => { if (r.ok) __dtf_result = {passed: true} })" \
        "</script>"
MODULE = """export default async function () {
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
  console.log('webgpu adapter:', adapter ? 'yes' : 'no');
  if (!isSecureContext) throw new Error('not a secure context');
  return {passed: true, details: {secure: isSecureContext}};
}
"""
BROKEN_MODULE = "export default () => { throw new Error('the model gave NaN'); }\n"
# a relative fetch is from the directory's root (the module's page is there)
SHARD = "export default async (p) => { console.log(`shard ${p.shard} of ${p.shards}`); " \
        "const own = await fetch('shard.js'); " \
        "return {passed: own.ok && p.shards === '3', details: p.shard}; }\n"
MERGE = "export default (p) => { const ids = p.tasks.split(','); console.log('merging', ids); " \
        "if (ids.length !== Number(p.shards)) throw new Error('wrong shards'); }\n"


def browser_task(root: Path, *, retries: int = 0, timeout: float = 20, **config: str) -> TaskSpec:
    return validate_spec(msgspec.convert({
        "type": "browser", "config": {**config, "cwd": str(root)}, "timeout_seconds": timeout,
        "retry_policy": {"max_retries": retries}}, TaskSpec))


@pytest.fixture
async def browser_stack(tmp_path: Path, request: pytest.FixtureRequest,
                        ) -> AsyncIterator[tuple[Harness, WorkerAgent, Path]]:
    site = tmp_path / "site"
    site.mkdir()
    for name, text in {"pass.html": PASS, "fail.html": FAIL, "set.html": SET,
                       "read.html": READ, "gated.html": GATED, "mod.js": MODULE,
                       "broken.js": BROKEN_MODULE, "never.html": "<p>no result",
                       "shard.js": SHARD, "merge.js": MERGE}.items():
        (site / name).write_text(text)
    detect = "detection" in request.node.name
    async with stack(tmp_path, workers=0) as h:
        # the pool's tests place by a tag (no probe's launch to wait for); the detection
        # test by what the probe's page found
        worker = await h.add_worker("w1", slots=2, browsers=detect, browser_recycle=3,
                                    cache_dir=tmp_path / "cache",
                                    tags=() if detect else ("browser",),
                                    always_unpack="pack" in request.node.name)
        yield h, worker, site


async def run(h: Harness, spec: TaskSpec) -> tuple[str, str, str]:
    task_id = (await h.api.submit([spec])).ids[0]
    row = await h.wait_status(task_id, TERMINAL, timeout=30)
    return task_id, row.status, row.error


async def output(h: Harness, task_id: str) -> str:
    records = await JetStreamLog(h.nc, stream=subjects.LOGS_STREAM).read(
        [subjects.log_filter(task_id)])
    return b"".join(r.data for r in records).decode()


async def browser_pids(h: Harness, task_id: str) -> list[int | None]:
    return [e.pid for _, e in await h.events(task_id) if isinstance(e, TaskStarted)]


async def test_pages_and_modules_pass_and_fail_in_fresh_contexts(
        browser_stack: tuple[Harness, WorkerAgent, Path]) -> None:
    h, worker, site = browser_stack
    # a fresh context per task, in the same browser (asserted below): the second sees
    # nothing of the first
    wrote, status, _ = await run(h, browser_task(site, page="set.html"))
    assert status == "succeeded"
    read, status, error = await run(h, browser_task(site, page="read.html"))
    assert (status, error) == ("succeeded", ""), error
    assert "saw null" in await output(h, read)

    passed, status, error = await run(h, browser_task(site, page="pass.html"))
    assert (status, error) == ("succeeded", "")
    assert "hello from the page" in await output(h, passed)

    failed, status, error = await run(h, browser_task(site, page="fail.html"))
    assert status == "failed"
    assert error == "the page reported a failure: expected 2, got 3"
    assert "about to fail" in await output(h, failed)

    # served under an https origin: a secure context, modules import as on any site
    module, status, error = await run(h, browser_task(site, module="mod.js"))
    assert (status, error) == ("succeeded", ""), error
    assert "webgpu adapter:" in await output(h, module)
    _, status, error = await run(h, browser_task(site, module="broken.js"))
    assert status == "failed"
    assert "the model gave NaN" in error

    _, status, error = await run(h, browser_task(site, page="absent.html"))
    assert (status, "no file absent.html" in error) == ("failed", True), error

    # recycled after 3 tasks: 3 per browser
    pids = [p for t in (wrote, read, passed, failed, module) for p in await browser_pids(h, t)]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4], pids
    assert worker.browser.launched == 2  # a missing file fails before taking a context
    # a spare context opened while the task before ran, but not for a browser's last task
    assert worker.browser.warm == 4


async def test_detection_says_why_webgpu_is_absent(
        browser_stack: tuple[Harness, WorkerAgent, Path]) -> None:
    """Through a real page: "browser" where Chromium runs; "webgpu" only for a GPU adapter,
    else the reason (no GPU here: a software fallback such as SwiftShader, or none)."""
    h, _, site = browser_stack
    # placed by the "browser" the probe found (no tag): it waits for the probe's event
    _, status, error = await run(h, browser_task(site, page="pass.html"))
    assert (status, error) == ("succeeded", "")
    caps = (await h.api.workers())[0].capabilities
    assert "browser" in caps.hardware and "browser" not in caps.tags
    said = [n for n in caps.notes if n.startswith("WebGPU: ")]
    assert len(said) == 1, caps.notes
    if "webgpu" in caps.hardware:
        assert said[0].startswith("WebGPU: adapter: "), said
    else:
        assert any(why in said[0] for why in (
            "only a fallback (software) adapter", "returned null", "navigator.gpu is absent",
            "requestAdapter() failed")), said


async def test_the_pool_recovers_from_a_killed_browser(
        browser_stack: tuple[Harness, WorkerAgent, Path]) -> None:
    h, worker, site = browser_stack
    task_id = (await h.api.submit([browser_task(site, page="gated.html", retries=1)])).ids[0]

    async def started() -> bool:
        return bool(await browser_pids(h, task_id))

    await until(started, 30, "the gated page to start")
    pid = (await browser_pids(h, task_id))[0]
    assert pid is not None and worker.browser.browser is not None
    assert worker.browser.browser.pid == pid
    (site / "gate.txt").write_text("open")  # the retry passes; this attempt never looks again
    os.kill(pid, signal.SIGKILL)
    row = await h.wait_status(task_id, TERMINAL, timeout=30)
    assert (row.status, row.attempt) == ("succeeded", 2), row
    requeued = [e for _, e in await h.events(task_id) if isinstance(e, TaskRequeued)]
    assert len(requeued) == 1
    assert requeued[0].error == (f"the browser (Chromium pid {pid}) ended: killed by signal 9;"
                                 " the next task gets a new browser")
    new_pid = (await browser_pids(h, task_id))[-1]
    assert new_pid not in (None, pid)
    _, status, _ = await run(h, browser_task(site, page="pass.html"))
    assert status == "succeeded"
    # a page that never reports ends at its timeout, and its context goes with it
    _, status, error = await run(h, browser_task(site, page="never.html", timeout=1))
    assert (status, error) == ("timed_out", "the page reported no result within 1s (set "
                               "window.__dtf_result = {passed, details})")
    assert worker.browser.launched == 2
    # a cancel ends the page and gives its context back
    never = (await h.api.submit([browser_task(site, page="never.html")])).ids[0]
    await h.wait_status(never, {"running"})

    async def in_use() -> bool:
        return worker.browser.busy == 1

    await until(in_use, 10, "the page to take a context")
    await h.api.cancel(never)

    async def given_back() -> bool:
        return worker.browser.busy == 0

    await until(given_back, 10, "the cancelled page's context to be given back")
    assert (await h.wait_status(never, TERMINAL)).status == "cancelled"


async def test_a_sharded_run_merges_after_every_shard(
        browser_stack: tuple[Harness, WorkerAgent, Path]) -> None:
    h, _, site = browser_stack
    specs = shard_run(browser_task(site, module="shard.js"), 3, "bs-test",
                      browser_task(site, module="merge.js"))
    res = await h.api.submit(specs, run_id="r-shards")
    rows = {}
    for task_id in res.ids:
        rows[task_id] = await h.wait_status(task_id, TERMINAL, timeout=30)
    assert {r.status for r in rows.values()} == {"succeeded"}, rows
    assert {r.run_id for r in rows.values()} == {"r-shards"}
    merge = rows.pop("bs-test-merge")
    assert merge.started_at is not None
    assert all(r.finished_at is not None and r.finished_at <= merge.started_at
               for r in rows.values()), (rows, merge)
    assert "shard 2 of 3" in await output(h, "bs-test-2")
    assert "merging [bs-test-0, bs-test-1, bs-test-2]" in await output(h, "bs-test-merge")


async def test_a_packed_page_runs_from_a_copy_of_its_directory(
        browser_stack: tuple[Harness, WorkerAgent, Path]) -> None:
    """As on a worker on another host: the page and what it loads come from the pack."""
    h, _, site = browser_stack
    spec, = await _with_packs(h.api, [browser_task(site, module="shard.js", timeout=20)],
                              "always")
    assert spec.config["code"]
    (site / "shard.js").unlink()  # only the pack has it now
    task_id = (await h.api.submit([msgspec.structs.replace(spec, config={
        **spec.config, "params": {"shard": "0", "shards": "3"}})])).ids[0]
    row = await h.wait_status(task_id, TERMINAL, timeout=30)
    assert (row.status, row.error) == ("succeeded", "")
    assert "shard 0 of 3" in await output(h, task_id)


async def test_the_pool_limits_contexts_and_recycles_under_running_tasks(
        tmp_path: Path) -> None:
    """At most ``max_contexts`` at once; the browser that served ``recycle_after`` tasks is
    replaced for the next one while its own tasks go on, and closed after its last."""
    pool = BrowserPool(tmp_path / "browser", max_contexts=2, recycle_after=2)
    try:
        async with pool.context() as first:
            got_third = asyncio.Event()
            release_third = asyncio.Event()
            browsers: list[Chromium] = []

            async def third() -> None:
                async with pool.context() as ctx:
                    browsers.append(ctx.browser)
                    got_third.set()
                    await release_third.wait()

            async with pool.context() as second:
                assert second.browser is first.browser
                assert second.context_id != first.context_id
                waiting = asyncio.create_task(third())

                async def at_the_limit() -> bool:
                    return pool.waiting == 1

                await until(at_the_limit, 10, "the third task to wait for a context")
                assert pool.busy == 2 and pool.launched == 1
            await asyncio.wait_for(got_third.wait(), 20)  # the second's slot, given back
            old = first.browser
            assert browsers[0] is not old and old.alive  # a new browser; the old one works on
            await old.call("Target.getTargets")
            release_third.set()
            await waiting

        async def closed() -> bool:  # after its last task
            return old.proc.returncode is not None and not old.alive

        await until(closed, 10, "the old browser to be closed")
        assert pool.launched == 2
    finally:
        await pool.close()
