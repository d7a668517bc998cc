"""The direction of imports: cli -> agents -> projections -> dtf_core, a pure core, and
inside agents: auth <- nats <- log <- wire <- {control, worker, http} <- host, and proc (the
platform layer: processes, signals, locks, private files and cores) <- {auth, nats, control,
worker, host}."""

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
# agents' sub-packages, each with what it may import besides itself (docs/architecture.md)
AGENTS_BELOW = {
    "proc": set(),
    "auth": {"proc"},  # private files' modes and fsyncs, as this OS allows
    "nats": {"auth", "proc"},  # the cores a nats-server it starts may use
    "log": {"auth", "nats"},
    "wire": {"auth", "nats", "log"},
    "control": {"auth", "nats", "log", "wire", "proc"},  # the projector's DuckDB threads
    "worker": {"auth", "nats", "log", "wire", "proc"},
    "http": {"auth", "nats", "log", "wire"},
    "host": {"auth", "nats", "log", "wire", "control", "worker", "http", "proc"},
}


def imports(package: str) -> list[tuple[Path, str]]:
    """(file, imported module's dotted name) for every absolute import under ``package``."""
    out = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out.extend((path, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.append((path, node.module))
                out.extend((path, f"{node.module}.{a.name}") for a in node.names)
    return out


def top(module: str) -> str:
    return module.split(".")[0]


def test_layers_import_only_downwards() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for package, allowed in ALLOWED.items()
        for path, mod in imports(package)
        if top(mod) in OURS and top(mod) not in allowed
    ]
    assert bad == []


def test_agents_sub_packages_import_only_downwards() -> None:
    bad = []
    for path, mod in imports("agents"):
        parts = path.relative_to(ROOT / "agents").parts
        if len(parts) == 1 or not mod.startswith("agents."):
            continue
        own, theirs = parts[0], mod.split(".")[1]
        if theirs != own and theirs not in AGENTS_BELOW[own]:
            bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert bad == []


def test_every_agents_module_lives_in_a_sub_package() -> None:
    loose = sorted(p.name for p in (ROOT / "agents").glob("*.py") if p.name != "__init__.py")
    subs = sorted(p.name for p in (ROOT / "agents").iterdir()
                  if p.is_dir() and (p / "__init__.py").exists())
    assert loose == []
    assert subs == sorted(AGENTS_BELOW)


def test_core_is_pure() -> None:
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p, m in imports("dtf_core")
           if top(m) in CORE_FORBIDDEN]
    assert bad == []


def test_the_checks_see_imports() -> None:
    assert "msgspec" in {top(m) for _, m in imports("dtf_core")}
    assert "agents.log.port" in {m for _, m in imports("agents")}


MAX_MODULE_LINES = 300
MAX_CLASS_LINES = 150


def test_modules_and_classes_stay_small() -> None:
    """Issue 14's limits: a module over 300 lines or a class over 150 is split by what it
    does before it grows further."""
    big = []
    for package in sorted(OURS):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            lines = len(text.splitlines())
            if lines > MAX_MODULE_LINES:
                big.append(f"{path.relative_to(ROOT)}: {lines} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    size = node.end_lineno - node.lineno + 1
                    if size > MAX_CLASS_LINES:
                        big.append(f"{path.relative_to(ROOT)}:{node.name}: {size} lines")
    assert big == []


def test_the_cli_starts_without_the_analytics_libraries() -> None:
    """`dtf` starts in about a third of a second: scipy, numpy, DuckDB and matplotlib load
    only for the commands that use them (importing scipy.stats alone took a second)."""
    import subprocess
    import sys

    code = ("import sys, cli.main; print(','.join(sorted(m for m in ('scipy', 'numpy', "
            "'duckdb', 'matplotlib', 'starlette') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    assert out == ""
