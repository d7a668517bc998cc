"""One browser task in its context: the contract installed, the task's files served, the
page opened; its console becomes the task's output, and the first of these ends it: the
page's report, an uncaught exception, a crash of its renderer, the browser's end, the
timeout or a cancel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.worker.browser import serve
from agents.worker.browser.cdp import BrowserGone, Event
from agents.worker.browser.pool import Context
from dtf_core.browser_spec import BrowserConfig, is_url
from dtf_core.errors import DTFError

OutputSink = Callable[[str, bytes], Awaitable[None]]
BINDING = "__dtfReport"
MAX_DETAILS = 16 * 1024
ERROR_TYPES = {"error", "warning", "assert"}


@dataclass
class Verdict:
    kind: str  # succeeded | failed | timed_out | cancelled
    error: str = ""
    permanent: bool = False


def _text(obj: dict[str, Any]) -> str:
    """A console argument as text: its value, the preview of an object or array (as
    DevTools shows it), else its description."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    preview = obj.get("preview") or {}
    if obj.get("type") == "object" and isinstance(preview.get("properties"), list):
        array = preview.get("subtype") == "array"
        items = [str(p.get("value", "")) if array else f"{p.get('name')}: {p.get('value', '')}"
                 for p in preview["properties"]]
        inner = ", ".join(items) + (", …" if preview.get("overflow") else "")
        return f"[{inner}]" if array else f"{{{inner}}}"
    return str(obj.get("unserializableValue") or obj.get("description") or obj.get("type", ""))


def _exception(params: dict[str, Any]) -> str:
    details = params.get("exceptionDetails", {})
    exc = details.get("exception") or {}
    where = f" ({details.get('url', '')}:{details.get('lineNumber', 0) + 1})" \
        if details.get("url") else ""
    return (exc.get("description") or details.get("text") or "an exception") + where


def verdict_of(payload: str) -> Verdict:
    """The page's report: ``{passed: bool, details?: any}``."""
    try:
        result = json.loads(payload)
    except ValueError:
        result = None
    if not isinstance(result, dict) or not isinstance(result.get("passed"), bool):
        return Verdict("failed", f"the page reported {payload[:200]!r}; expected "
                                 "{passed: true|false, details: ...}", permanent=True)
    if result["passed"]:
        return Verdict("succeeded")
    details = result.get("details")
    text = details if isinstance(details, str) else json.dumps(details)
    return Verdict("failed", f"the page reported a failure: {text[:MAX_DETAILS]}")


class PageRun:
    def __init__(self, ctx: Context, cfg: BrowserConfig, root: Path | None,
                 sink: OutputSink) -> None:
        """``root``: the directory served to the page (None: none, a URL page)."""
        self.ctx = ctx
        self.cfg = cfg
        self.root = root
        self.sink = sink

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.ctx.browser.call(method, params, session=self.ctx.session)

    async def run(self, timeout: float, cancel: asyncio.Event) -> Verdict:
        events = self.ctx.browser.listen(self.ctx.session)
        try:
            async with asyncio.timeout(timeout):
                return await self._run(events, cancel)
        except TimeoutError:
            return Verdict("timed_out", f"the page reported no result within {timeout:g}s "
                           "(set window.__dtf_result = {passed, details})")
        except BrowserGone as exc:
            return Verdict("failed", f"{exc}; the next task gets a new browser")
        finally:
            self.ctx.browser.unlisten(self.ctx.session)

    async def _run(self, events: asyncio.Queue[Event | None], cancel: asyncio.Event) -> Verdict:
        for method in ("Runtime.enable", "Page.enable", "Inspector.enable"):
            await self.call(method)
        await self.call("Runtime.addBinding", {"name": BINDING})
        await self.call("Page.addScriptToEvaluateOnNewDocument", {"source": serve.CONTRACT_JS})
        if self.root is not None and (self.cfg.module is not None
                                      or not is_url(self.cfg.page or "")):
            # the directory's files for the task's own page; a page from a URL gets none
            await self.call("Fetch.enable", {"patterns": [{"urlPattern": serve.ORIGIN + "/*"}]})
        url = serve.entry_url(self.cfg.page, self.cfg.module, self.cfg.params)
        navigate = asyncio.ensure_future(self.call("Page.navigate", {"url": url}))
        stop = asyncio.ensure_future(cancel.wait())
        try:
            while True:
                get = asyncio.ensure_future(events.get())
                waiting: set[asyncio.Future[Any]] = {get, stop}
                if not navigate.done():
                    waiting.add(navigate)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if stop.done():
                    get.cancel()
                    return Verdict("cancelled", "cancelled")
                if navigate in waiting and navigate.done():
                    failed = navigate.result().get("errorText")
                    if failed:
                        get.cancel()
                        return Verdict("failed", f"cannot open {url}: {failed}")
                if not get.done():
                    continue
                event = get.result()
                if event is None:
                    raise BrowserGone(self.ctx.browser.why_gone)
                verdict = await self._handle(event)
                if verdict is not None:
                    return verdict
        finally:
            stop.cancel()
            if not navigate.done():
                navigate.cancel()
            with contextlib.suppress(BaseException):
                await navigate

    async def _handle(self, event: Event) -> Verdict | None:
        method = event.get("method")
        params: dict[str, Any] = event.get("params", {})
        if method == "Fetch.requestPaused" and self.root is not None:
            reply = await asyncio.to_thread(serve.response, self.root,
                                            params["request"]["url"], self.cfg.module)
            with contextlib.suppress(DTFError):  # the page went away meanwhile
                await self.call("Fetch.fulfillRequest", {"requestId": params["requestId"],
                                                         **reply})
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(_text(a) for a in params.get("args", []))
            stream = "stderr" if params.get("type") in ERROR_TYPES else "stdout"
            await self.sink(stream, (text + "\n").encode())
        elif method == "Runtime.bindingCalled" and params.get("name") == BINDING:
            payload = str(params.get("payload", ""))
            await self.sink("stdout", f"dtf result: {payload[:MAX_DETAILS]}\n".encode())
            return verdict_of(payload)
        elif method == "Runtime.exceptionThrown":
            text = _exception(params)
            await self.sink("stderr", f"uncaught: {text}\n".encode())
            return Verdict("failed", f"uncaught exception in the page: {text[:MAX_DETAILS]}")
        elif method == "Inspector.targetCrashed":
            return Verdict("failed", "the page crashed (its renderer process ended)")
        return None
