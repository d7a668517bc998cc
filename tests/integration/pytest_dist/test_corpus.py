"""A real project's own suite (jinja2 3.1.6 from PyPI, pinned) through `dtf run pytest`,
cold and warm, compared test by test with plain pytest by ``bench/corpus.py``. The whole
corpus (six projects) runs with ``python bench/corpus.py``; this keeps one in CI.

The suite's venv and sources are prepared once (``bench/corpus/prepare.sh``, from the
package registry) under ``DTF_CORPUS_DIR`` (default ``~/.cache/dtf/corpus``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "corpus.py"


@pytest.mark.timeout(900)  # the first run prepares the suite's venv
def test_jinja2_is_identical_to_plain_pytest_test_by_test() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--suites", "jinja2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1) and proc.stdout.strip(), proc.stderr[-5000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])["jinja2"]
    assert result["identical"], proc.stderr[-5000:]
    assert proc.returncode == 0
