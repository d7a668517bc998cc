"""A test's serialised reports: packed without losing a field, and fitted into one message
by cutting captured output (head and tail kept, the cut said), never the outcome."""

import json

from agents.worker.pytest.reports import MAX_CASE_BYTES, fit, pack
from cli.pytest.wire import unpack_reports


def reports(out: str = "", longrepr: object = None) -> list[dict]:  # type: ignore[type-arg]
    base = {"$report_type": "TestReport", "nodeid": "t.py::test_x",
            "location": ["t.py", 1, "test_x"], "keywords": {"test_x": 1}, "longrepr": None,
            "user_properties": [], "sections": []}
    sections = [["Captured stdout call", out]] if out else []
    return [{**base, "when": "setup", "outcome": "passed", "duration": 0.1},
            {**base, "when": "call", "outcome": "failed" if longrepr else "passed",
             "duration": 0.2, "longrepr": longrepr, "sections": sections},
            {**base, "when": "teardown", "outcome": "passed", "duration": 0.3,
             "sections": sections}]


def test_pack_is_lossless_and_shares_what_the_phases_share() -> None:
    data = reports("out")
    packed = pack(data)
    assert set(packed["c"]) >= {"nodeid", "location", "keywords"}
    assert unpack_reports(json.loads(json.dumps(packed))) == json.loads(json.dumps(data))
    assert len(json.dumps(packed)) < len(json.dumps(data))


def test_fit_cuts_captured_output_keeps_head_tail_and_outcome() -> None:
    data = reports("H" + "x" * 500_000 + "T", longrepr={"reprcrash": {"message": "boom"}})
    encoded = fit(data)
    assert len(encoded) <= MAX_CASE_BYTES
    back = unpack_reports(json.loads(encoded))
    assert [r["outcome"] for r in back] == ["passed", "failed", "passed"]
    assert back[1]["longrepr"] == {"reprcrash": {"message": "boom"}}
    (title, text), = back[1]["sections"]
    assert title == "Captured stdout call"
    assert text.startswith("H") and text.endswith("T")
    assert "DTF cut" in text and "of the 500,002 characters of captured output" in text


def test_fit_cuts_a_huge_traceback_only_when_output_is_not_enough() -> None:
    long_line = "E " + "y" * 400_000
    data = reports(longrepr={"reprcrash": {"message": "short"},
                             "reprtraceback": {"reprentries": [{"lines": [long_line]}]}})
    back = unpack_reports(json.loads(fit(data)))
    assert back[1]["outcome"] == "failed"
    assert back[1]["longrepr"]["reprcrash"] == {"message": "short"}
    assert "DTF cut" in back[1]["longrepr"]["reprtraceback"]["reprentries"][0]["lines"][0]


def test_small_reports_are_untouched() -> None:
    data = reports("a little output")
    assert unpack_reports(json.loads(fit(data))) == json.loads(json.dumps(data))


def test_a_spare_whose_worker_went_away_ends_without_collecting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A spare waits for its setup on stdin; if its worker dies first (end of file), it
    ends at once, instead of running pytest with no setup from `/` (a whole-disk
    collection, left running as an orphan)."""
    import subprocess
    import sys

    from agents.worker.pytest.server import BOOT, SESSION_FILE

    done = subprocess.run([sys.executable, "-c", BOOT, str(SESSION_FILE)], cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"collected" not in done.stdout + done.stderr
