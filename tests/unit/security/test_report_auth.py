"""ADR 0020: a worker that registered a signing key proves each batch of reports with its
session's tag (the report key the api handed it at registration) or with its signature;
a tag of another session, another secrets key or a changed batch is refused, and without
a secrets key (``--insecure-dev``) only the signature counts."""

from __future__ import annotations

import os

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.auth.secrets import Sealer
from agents.auth.signing import canonical_bytes, mac, public_key_bytes, sign
from agents.control import plans
from agents.control.report_auth import check_report_auth
from dtf_core import commands as cmds
from dtf_core.errors import Refused
from dtf_core.events import codec
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.task import Report
from projections.board import Board

KEY = Ed25519PrivateKey.generate()
SEALER = Sealer(os.urandom(32))
CAPS = Capabilities(cpu_count=2, memory_gb=4.0, hardware=("cpu",))


def board(session: str = "s1", signing_key: bytes | None = None) -> Board:
    b = Board()
    b.apply(1, WorkerRegistered(worker_id="w1", session=session, hostname="h", pid=1,
                                slots=1, capabilities=CAPS, at=1.0, actor="w1",
                                signing_key=signing_key or public_key_bytes(KEY.public_key())))
    return b


def batch(fencing: int = 7) -> cmds.ReportResults:
    return cmds.ReportResults(reports=[Report(task_id="t1", kind="succeeded", fencing=fencing,
                                              worker_id="w1")])


def tagged(cmd: cmds.ReportResults, key: bytes) -> cmds.ReportResults:
    return msgspec.structs.replace(cmd, mac=mac(key, canonical_bytes(cmd.signed_part())))


def test_the_sessions_tag_proves_the_batch() -> None:
    check_report_auth(board(), tagged(batch(), SEALER.report_key("w1", "s1")), SEALER.report_key)


@pytest.mark.parametrize("key", [
    SEALER.report_key("w1", "s0"),  # an earlier session's
    SEALER.report_key("w2", "s1"),  # another worker's
    Sealer(os.urandom(32)).report_key("w1", "s1"),  # another stack's secrets key
])
def test_another_tag_is_refused(key: bytes) -> None:
    with pytest.raises(Refused, match="bad signature"):
        check_report_auth(board(), tagged(batch(), key), SEALER.report_key)


def test_a_changed_batch_is_refused() -> None:
    good = tagged(batch(fencing=7), SEALER.report_key("w1", "s1"))
    changed = msgspec.structs.replace(batch(fencing=8), mac=good.mac)
    with pytest.raises(Refused, match="bad signature"):
        check_report_auth(board(), changed, SEALER.report_key)


def test_without_a_secrets_key_only_the_signature_counts() -> None:
    cmd = tagged(batch(), SEALER.report_key("w1", "s1"))
    with pytest.raises(Refused, match="must be signed"):
        check_report_auth(board(), cmd, None)
    signed = msgspec.structs.replace(
        batch(), signature=sign(KEY, canonical_bytes(batch().signed_part())))
    check_report_auth(board(), signed, None)
    check_report_auth(board(), signed, SEALER.report_key)  # a signature still does
    with pytest.raises(Refused, match="must be signed"):
        check_report_auth(board(), batch(), SEALER.report_key)


def test_every_control_plane_with_the_secrets_key_derives_the_same_key() -> None:
    key = os.urandom(32)
    assert Sealer(key).report_key("w1", "s1") == Sealer(key).report_key("w1", "s1")
    assert len({Sealer(key).report_key(w, s) for w in ("w1", "w2") for s in ("s1", "s2")}) == 4


def test_the_registration_answer_carries_the_key_only_with_a_secrets_key() -> None:
    import base64

    cmd = cmds.RegisterWorker(worker_id="w1", session="s9", hostname="h", pid=1, slots=1,
                              capabilities=CAPS, actor="w1")
    key = SEALER.report_key("w1", "s9")
    with_key = plans.plan_register(Board(), cmd, now=1.0, report_key=SEALER.report_key)
    without = plans.plan_register(Board(), cmd, now=1.0)
    b = Board()
    for seq, ev in enumerate(with_key.changes[0].events, start=1):
        written = codec.encode(ev)  # what the log would hold: never the key
        assert key not in written and base64.b64encode(key) not in written
        b.apply(seq, ev)
    answer = plans.plan_register(b, cmd, now=1.0, report_key=SEALER.report_key).reply()
    assert answer.report_key == key  # type: ignore[union-attr]
    assert plans.plan_register(b, cmd, now=1.0).reply().report_key is None  # type: ignore[union-attr]
    assert without.changes[0].events == with_key.changes[0].events
