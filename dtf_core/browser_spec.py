"""The config of a ``browser`` task (a test page or a JavaScript module in a worker's
headless Chromium), checked as the task is submitted."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from dtf_core.errors import InvalidInput
from dtf_core.spec import Digest, RelPath, TaskSpec, check_relative

ParamName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class BrowserConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A test page (``page``: a path inside ``cwd``, or an http(s) URL) or a JavaScript
    module (``module``: a path inside ``cwd``; its default export is called) run in a fresh
    context of the worker's headless Chromium (agents/worker/browser). ``cwd``, ``host``
    and ``code`` travel as a command's do: the files are served from the submitter's
    directory on its host, else from a copy of its pack. ``params`` join the page's URL
    query (a module's default export is called with them, as an object)."""

    page: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    module: RelPath | None = None
    params: Annotated[dict[ParamName, Annotated[str, Meta(max_length=4096)]],
                      Meta(max_length=64)] = {}
    cwd: str | None = None
    host: str = ""
    code: Digest | None = None


BROWSER = "browser"  # the hardware name of a worker with a headless Chromium


def browser_config(spec: TaskSpec) -> BrowserConfig:
    return msgspec.convert(spec.config, BrowserConfig)


def is_url(page: str) -> bool:
    return page.startswith(("http://", "https://"))


def validate_browser(spec: TaskSpec) -> TaskSpec:
    try:
        cfg = browser_config(spec)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid browser config: {exc} (in `$.config`)") from None
    if (cfg.page is None) == (cfg.module is None):
        raise InvalidInput("invalid browser config: give a `page` or a `module`, not both")
    if any("\x00" in a for a in (cfg.page or "", cfg.module or "", cfg.cwd or "")):
        raise InvalidInput("invalid browser config: a NUL byte in page, module or cwd")
    if cfg.module is not None:
        if is_url(cfg.module):
            raise InvalidInput("invalid browser module: a path inside the directory, not a "
                               "URL (a module may import URLs itself)")
        check_relative(cfg.module, "browser module")
    elif cfg.page is not None and not is_url(cfg.page):
        check_relative(cfg.page.split("?", 1)[0].split("#", 1)[0], "browser page")
    if BROWSER in spec.requirements.hardware:
        return spec
    return msgspec.structs.replace(spec, requirements=msgspec.structs.replace(
        spec.requirements, hardware=(*spec.requirements.hardware, BROWSER)))
