"""Unit-test settings: no per-example deadline (a loaded CI machine is not a failure)."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("dtf-unit", deadline=None)
settings.load_profile("dtf-unit")
