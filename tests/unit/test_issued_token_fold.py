"""Given a token the api issues, when its event is folded as planned and as the log gives it
back, then both boards hash the same (invariant 7: the api's state equals a replay)."""

from __future__ import annotations

from pathlib import Path

from agents.auth.keyring import Keyring
from agents.control.auth_plans import plan_issue
from dtf_core import commands as cmds
from dtf_core.events.codec import decode, encode, subject_of
from projections.board import Board


def test_an_issued_tokens_event_folds_as_its_replay_does(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    plan = plan_issue(Board(), cmds.IssueToken(sub="w1", role="worker", ttl_s=3600.5,
                                               worker_id="w1", actor="admin"),
                      keyring=keyring, now=1000.25)
    (event,) = plan.changes[0].events
    live, replay = Board(), Board()
    live.apply(7, event)
    replay.apply(7, decode(subject_of(event), encode(event)))
    assert live.state_hash() == replay.state_hash()
