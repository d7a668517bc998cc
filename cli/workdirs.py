"""Where a submitted task runs: the submitter's directory, for the tasks that run the
submitter's code."""

from __future__ import annotations

from pathlib import Path

import msgspec

from dtf_core.spec import TaskSpec, validate_spec


def runs_user_code(spec: TaskSpec) -> bool:
    """A command, a browser task, or a benchmark of the user's callable or command: it runs
    in a directory of the submitter's (a built-in workload runs anywhere)."""
    return spec.type in ("command", "browser") or (spec.type == "benchmark" and bool(
        spec.config.get("callable") or spec.config.get("command")))


def in_submitters_dir(spec: TaskSpec, cwd: str | None) -> TaskSpec:
    """A command task's working directory, absolute, as a shell would run it: relative to
    where `dtf submit` runs (``--cwd``, the spec's own ``cwd``, or the submitter's
    directory). A local worker finds ./run-suite.sh there; another host, a copy of it.
    A benchmark also records the commit checked out there, when it is a git tree."""
    base = Path(cwd or ".").resolve()
    config = dict(spec.config)
    if spec.type == "benchmark" and not config.get("commit"):
        from agents.worker.bench.host import git_commit

        commit = git_commit(str(base))
        if commit:
            config["commit"] = commit
    if runs_user_code(spec):
        where = spec.config.get("cwd")
        config["cwd"] = str(base / where) if isinstance(where, str) and where else str(base)
    if config == spec.config:
        return spec
    return validate_spec(msgspec.structs.replace(spec, config=config))
