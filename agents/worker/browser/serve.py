"""The task's files, served to its page under a fixed https origin by intercepting the
page's requests (the DevTools ``Fetch`` domain): no port is opened, the page is a secure
context (WebGPU needs one), modules load as from any site, and only files inside the
task's directory are reachable."""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

ORIGIN = "https://dtf.task"
MODULE_PAGE = "/__dtf_module__.html"  # at the root: relative URLs resolve from there
MAX_FILE = 100 * 1024 * 1024
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".html": "text/html", ".css": "text/css"}

# Runs first in every document of the task's page: the result contract. The page sets
# ``window.__dtf_result = {passed, details}`` or calls ``dtf.report({...})``; the first
# report is the verdict.
CONTRACT_JS = """(() => {
  let value;
  const send = (r) => {
    let text;
    try { text = JSON.stringify(r === undefined ? null : r); }
    catch (e) { text = JSON.stringify({passed: false, details: 'unserialisable result: ' + e}); }
    globalThis.__dtfReport(text);
  };
  Object.defineProperty(window, '__dtf_result', {
    configurable: false, get: () => value, set: (v) => { value = v; send(v); }});
  window.dtf = Object.freeze({report: (r) => { window.__dtf_result = r; }});
})();"""


def module_page(module: str) -> bytes:
    """The page that runs a module: its default export (a function, maybe async) is called
    with the task's params; returning passes (an object with ``passed`` is the result as
    given), throwing fails."""
    src = json.dumps("/" + quote(module))
    return f"""<!doctype html><meta charset="utf-8"><title>dtf module</title>
<script type="module">
try {{
  const m = await import({src});
  if (window.__dtf_result === undefined) {{
    const params = Object.fromEntries(new URLSearchParams(location.search));
    const r = typeof m.default === 'function' ? await m.default(params) : m.default;
    window.__dtf_result = (r && typeof r === 'object' && typeof r.passed === 'boolean')
      ? r : {{passed: true, details: r === undefined ? null : r}};
  }}
}} catch (e) {{
  window.__dtf_result = {{passed: false, details: String((e && e.stack) || e)}};
}}
</script>""".encode()


def entry_url(page: str | None, module: str | None,
              params: Mapping[str, str] | None = None) -> str:
    """The URL the task's page opens at, with ``params`` added to its query."""
    if module is not None:
        url = ORIGIN + MODULE_PAGE
    else:
        assert page is not None
        if page.startswith(("http://", "https://")):
            url = page
        else:
            cut = min((i for i in (page.find("?"), page.find("#")) if i >= 0),
                      default=len(page))
            url = f"{ORIGIN}/{quote(page[:cut])}{page[cut:]}"
    if not params:
        return url
    url, hash_, fragment = url.partition("#")
    joined = f"{url}{'&' if '?' in url else '?'}{urlencode(sorted(params.items()))}"
    return f"{joined}{hash_}{fragment}"


def local_file(root: Path, url: str) -> Path | None:
    """The file under ``root`` a request of the task's origin names, or None (outside the
    root, a directory, absent)."""
    rel = unquote(urlsplit(url).path).lstrip("/")
    if not rel or "\x00" in rel:
        return None
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def response(root: Path, url: str, module: str | None) -> dict[str, Any]:
    """``Fetch.fulfillRequest`` parameters (less the request id) for ``url``."""
    if module is not None and urlsplit(url).path == MODULE_PAGE:
        return _ok(module_page(module), "text/html")
    path = local_file(root, url)
    if path is None:
        return _status(404, f"no such file in the task's directory: {urlsplit(url).path}")
    size = path.stat().st_size
    if size > MAX_FILE:
        return _status(413, f"{path.name} is {size} bytes; files over {MAX_FILE} are not served")
    kind = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or \
        "application/octet-stream"
    return _ok(path.read_bytes(), kind)


def _ok(body: bytes, kind: str) -> dict[str, Any]:
    return {"responseCode": 200, "body": base64.b64encode(body).decode(),
            "responseHeaders": [{"name": "Content-Type", "value": kind},
                                {"name": "Cache-Control", "value": "no-store"}]}


def _status(code: int, text: str) -> dict[str, Any]:
    return {"responseCode": code, "body": base64.b64encode(text.encode()).decode(),
            "responseHeaders": [{"name": "Content-Type", "value": "text/plain"}]}
