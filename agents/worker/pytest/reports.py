"""A test's reports as a session sends them: pytest's classification of the outcome, the
serialised reports packed and fitted to the bus's size (captured output cut, never an
outcome), and warnings as pytest-xdist sends them.

Standard library and msgspec only: the session loads this file by path, so nothing of DTF
is importable in the tests' process.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

MAX_CASE_BYTES = 192 * 1024  # one test's reports, serialised (the server's max payload is 1 MiB)
MIN_KEEP = 512
def outcome_of(reports: list[Any]) -> str:
    """pytest's own classification of an item from its phase reports."""
    for rep in reports:
        if rep.when != "call" and rep.failed:
            return "error"
    for rep in reports:
        if hasattr(rep, "wasxfail"):
            return "xpassed" if rep.passed else "xfailed"
    for rep in reports:
        if rep.failed:
            return "failed"
    if any(rep.skipped for rep in reports):
        return "skipped"
    return "passed"


# --- size: cut captured output, never an outcome ----------------------------------------

def _cut(text: str, keep: int, what: str) -> str:
    if len(text) <= keep:
        return text
    half = max(keep // 2, 1)
    dropped = len(text) - 2 * half
    return (f"{text[:half]}\n[... DTF cut {dropped:,} of the {len(text):,} characters of "
            f"{what} here: the head and the tail are shown ...]\n{text[-half:]}")


def _sections(data: list[dict[str, Any]]) -> list[list[Any]]:
    """Every captured-output section of the serialised reports (mutable in place)."""
    out: list[list[Any]] = []
    for rep in data:
        out.extend(s for s in rep.get("sections") or () if isinstance(s, list))
        longrepr = rep.get("longrepr")
        if isinstance(longrepr, dict):
            out.extend(s for s in longrepr.get("sections") or () if isinstance(s, list))
    return out


def _strings(node: Any, found: list[tuple[Any, Any]]) -> None:
    """Every long string inside a serialised longrepr, with where it sits."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, str):
            if len(value) > MIN_KEEP:
                found.append((node, key))
        elif isinstance(value, (dict, list)):
            _strings(value, found)


def pack(data: list[dict[str, Any]]) -> Any:
    """A test's serialised reports without repeating what they share: the node id, the
    location, the keywords and most else are the same in setup, call and teardown. Lossless:
    each report is ``{**c, **p[i]}``. Two thirds fewer bytes through every hop."""
    if len(data) < 2:
        return data
    first, rest = data[0], data[1:]
    common = {k: v for k, v in first.items() if all(k in d and d[k] == v for d in rest)}
    return {"c": common, "p": [{k: v for k, v in d.items() if k not in common} for d in data]}


def fit(data: list[dict[str, Any]], limit: int = MAX_CASE_BYTES) -> bytes:
    """The reports as JSON (``pack``ed) within ``limit`` bytes. Captured output is cut first
    (its head and tail kept, and the cut said); only if that is not enough are the longest
    strings of the tracebacks cut the same way. The outcome, the crash line and the
    structure stay."""
    encoded = _encode(pack(data))
    if len(encoded) <= limit:
        return encoded
    data = msgspec.json.decode(_encode(data))  # plain lists and dicts, to cut in place
    for pick in (lambda: _sections(data), lambda: _longrepr_strings(data)):
        targets = pick()
        if not targets:
            continue
        originals = [t[1] if isinstance(t, list) else t[0][t[1]] for t in targets]
        lo, hi = MIN_KEEP, max(len(s) for s in originals)
        best = None
        while lo <= hi:  # the largest per-string cap that fits
            cap = (lo + hi) // 2
            _apply(targets, originals, cap)
            encoded = _encode(pack(data))
            if len(encoded) <= limit:
                best, lo = cap, cap + 1
            else:
                hi = cap - 1
        _apply(targets, originals, best if best is not None else MIN_KEEP)
        encoded = _encode(pack(data))
        if len(encoded) <= limit:
            return encoded
    return encoded


def _longrepr_strings(data: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    found: list[tuple[Any, Any]] = []
    for rep in data:
        longrepr = rep.get("longrepr")
        if isinstance(longrepr, (dict, list)):
            _strings(longrepr, found)
    return found


def _apply(targets: list[Any], originals: list[str], cap: int) -> None:
    for target, text in zip(targets, originals, strict=True):
        if isinstance(target, list):  # a section: [title, content]
            target[1] = _cut(text, cap, "captured output")
        else:
            node, key = target
            node[key] = _cut(text, cap, "this text")


# --- warnings, as pytest-xdist sends them -----------------------------------------------

def serialize_warning(message: Any) -> dict[str, Any]:
    msg = message.message
    out: dict[str, Any] = {"filename": str(message.filename), "lineno": message.lineno,
                           "message_str": str(msg)}
    if isinstance(msg, Warning):
        out["message_module"] = type(msg).__module__
        out["message_class"] = type(msg).__name__
        try:
            _encode(msg.args)
            out["message_args"] = list(msg.args)
        except (TypeError, msgspec.EncodeError):
            pass
    if message.category is not None:
        out["category_module"] = message.category.__module__
        out["category_class"] = message.category.__name__
    return out
