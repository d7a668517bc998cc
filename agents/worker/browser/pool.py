"""A worker's pool of browser contexts: one headless Chromium, started at the first browser
task, at most ``max_contexts`` contexts open in it at once. Each task gets a context of its
own (``Target.createBrowserContext``: its own cookies, storage and cache), disposed when
the task ends, so no task sees what another left. The browser is recycled after
``recycle_after`` tasks, and replaced at the next task when it died (killed, crashed):
what ran in it fails with ``BrowserGone``, a failure the task's retries apply to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from agents.worker.browser.cdp import BrowserGone, Chromium, find_chromium, launch
from agents.worker.runner import TaskUser
from dtf_core.errors import DTFError

log = logging.getLogger(__name__)
MAX_CONTEXTS = 4
RECYCLE_AFTER = 50


@dataclass(frozen=True)
class Context:
    """A fresh browser context with one page, attached as a flat session."""

    browser: Chromium
    context_id: str
    target_id: str
    session: str


class BrowserPool:
    def __init__(self, root: Path, max_contexts: int = MAX_CONTEXTS,
                 recycle_after: int = RECYCLE_AFTER, user: TaskUser | None = None, *,
                 binary: str | None = None) -> None:
        """``user``: the account the browser runs as (``--task-user``), as tasks do."""
        if max_contexts < 1 or recycle_after < 1:
            raise ValueError("max_contexts and recycle_after must be at least 1")
        self.root = root
        self.binary = binary
        self.user = user
        self.max_contexts = max_contexts
        self.recycle_after = recycle_after
        self.browser: Chromium | None = None
        self.launched = 0  # browsers started by this pool
        self.warm = 0  # tasks given a spare context, opened while the task before ran
        self.waiting = 0  # tasks waiting for a context (all max_contexts in use)
        self._spare: asyncio.Future[Context] | None = None
        self._uses = 0  # tasks given to the current browser
        self._users: dict[Chromium, int] = {}
        self._retired: set[Chromium] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._slots = asyncio.Semaphore(max_contexts)
        self._lock = asyncio.Lock()
        self._closed = False

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[Context]:
        """A fresh context in a live browser, disposed (with its storage) on exit."""
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            browser = await self._take()
            try:
                ctx = await self._fresh(browser)
                self._open_spare(browser)
                try:
                    yield ctx
                finally:
                    await _dispose(ctx)
            finally:
                await self._give_back(browser)
        finally:
            self._slots.release()

    @property
    def busy(self) -> int:
        """Contexts in use by tasks now."""
        return sum(self._users.values())

    async def _fresh(self, browser: Chromium) -> Context:
        """The spare context opened while the last task ran (never used: as fresh as a
        new one), else a new one."""
        spare, self._spare = self._spare, None
        if spare is not None:
            ctx = await _outcome(spare)
            if ctx is not None and ctx.browser is browser:
                self.warm += 1
                return ctx
            if ctx is not None:
                await _dispose(ctx)
        return await _open(browser)

    def _open_spare(self, browser: Chromium) -> None:
        """The next task's context, opened now, unless the next task gets a new browser."""
        if self._spare is None and browser.alive and self._uses < self.recycle_after \
                and not self._closed:
            self._spare = asyncio.ensure_future(_open(browser))

    async def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is None:
            return
        spare.cancel()
        ctx = await _outcome(spare)
        if ctx is not None:
            await _dispose(ctx)

    async def _take(self) -> Chromium:
        async with self._lock:
            if self._closed:
                raise DTFError("the worker is stopping: no browser for new tasks")
            current = self.browser
            if current is not None and (not current.alive or self._uses >= self.recycle_after):
                why = "died" if not current.alive else f"served {self._uses} tasks"
                log.info("replacing the browser (pid %d): it %s", current.pid, why)
                self.browser = None
                await self._drop_spare()
                await self._retire(current)
            if self.browser is None:
                binary = self.binary or find_chromium()
                if binary is None:
                    raise DTFError("no Chromium on this worker (chromium, chromium-browser, "
                                   "google-chrome): it cannot run browser tasks")
                self.browser = await launch(binary, self.root, self.user)
                self.launched += 1
                self._uses = 0
            self._uses += 1
            self._users[self.browser] = self._users.get(self.browser, 0) + 1
            return self.browser

    async def _give_back(self, browser: Chromium) -> None:
        left = self._users[browser] = self._users[browser] - 1
        if left == 0:
            del self._users[browser]
            if browser in self._retired:
                await self._close(browser)

    async def _retire(self, browser: Chromium) -> None:
        """Closed now when idle, else when its last task ends."""
        if self._users.get(browser, 0) == 0:
            await self._close(browser)
        else:
            self._retired.add(browser)

    async def _close(self, browser: Chromium) -> None:
        """Closed in the background: the next task need not wait for it to quit."""
        self._retired.discard(browser)
        closing = asyncio.ensure_future(browser.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            await self._drop_spare()
            browsers = {*self._users, *self._retired}
            if self.browser is not None:
                browsers.add(self.browser)
            self.browser = None
        for browser in browsers:
            await browser.close()
        await asyncio.gather(*self._closing, return_exceptions=True)


async def _outcome(spare: asyncio.Future[Context]) -> Context | None:
    """The spare's context, or None when opening it failed or was cancelled (a cancel of
    the caller itself still propagates)."""
    await asyncio.wait([spare])
    if spare.cancelled() or spare.exception() is not None:
        return None
    return spare.result()


async def _dispose(ctx: Context) -> None:
    with contextlib.suppress(DTFError):  # gone with its browser
        await ctx.browser.call("Target.disposeBrowserContext",
                               {"browserContextId": ctx.context_id})


async def _open(browser: Chromium) -> Context:
    made = await browser.call("Target.createBrowserContext", {"disposeOnDetach": True})
    context_id = made["browserContextId"]
    try:
        target = await browser.call("Target.createTarget", {
            "url": "about:blank", "browserContextId": context_id})
        attached = await browser.call("Target.attachToTarget", {
            "targetId": target["targetId"], "flatten": True})
    except DTFError:
        if browser.alive:
            with contextlib.suppress(DTFError):
                await browser.call("Target.disposeBrowserContext",
                                   {"browserContextId": context_id})
        raise
    return Context(browser, context_id, target["targetId"], attached["sessionId"])


__all__ = ["BrowserGone", "BrowserPool", "Context"]
