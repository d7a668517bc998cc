"""Benchmarks: each one command, printing its figures and, last, one JSON line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def emit(result: Mapping[str, Any], only_json: bool) -> None:
    """The figures one per line (unless ``only_json``), then the JSON line."""
    if not only_json:
        width = max((len(k) for k in result), default=0)
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")
    print(json.dumps(result))
