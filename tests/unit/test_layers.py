"""The direction of imports: cli -> agents -> projections -> dtf_core, and a pure core."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"dtf_core", "projections", "agents", "cli"}
CORE_FORBIDDEN = {"nats", "duckdb", "os", "time", "random", "uuid", "logging", "socket",
                  "subprocess", "asyncio", "anyio", "psutil", "datetime", "threading"}
ALLOWED = {
    "dtf_core": {"dtf_core"},
    "projections": {"dtf_core", "projections"},
    "agents": {"dtf_core", "projections", "agents"},
    "cli": OURS,
}


def imports(package: str) -> list[tuple[Path, str]]:
    out = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out.extend((path, a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.append((path, node.module.split(".")[0]))
    return out


def test_layers_import_only_downwards() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for package, allowed in ALLOWED.items()
        for path, mod in imports(package)
        if mod in OURS and mod not in allowed
    ]
    assert bad == []


def test_core_is_pure() -> None:
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p, m in imports("dtf_core")
           if m in CORE_FORBIDDEN]
    assert bad == []


def test_the_check_sees_imports() -> None:
    assert ("msgspec" in {m for _, m in imports("dtf_core")})
