"""Finding a scheduling policy by name: built-ins first, then ``dtf.policies`` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

from dtf_core.errors import InvalidInput
from dtf_core.policy import BUILTIN, Policy

GROUP = "dtf.policies"


def available() -> list[str]:
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group=GROUP))})


def load_policy(name: str) -> Policy:
    if name in BUILTIN:
        policy: Policy = BUILTIN[name]()
        return policy
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            loaded = ep.load()
            return loaded() if isinstance(loaded, type) else loaded  # type: ignore[no-any-return]
    raise InvalidInput(f"unknown scheduling policy {name!r}; available: "
                       f"{', '.join(available())}")
