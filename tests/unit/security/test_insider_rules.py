"""Pure rules that keep a logged-in insider inside its role: where answers may go, which
tokens a revocation reaches, and what a refresh may make."""

import pytest

from agents.auth.natsauth.permissions import reply_target
from dtf_core.events.auth import ApiKeyRevoked, TokenIssued, TokenRevoked
from projections.auth import AuthState
from projections.board import Board


@pytest.mark.parametrize(("reply", "role", "principal", "ok"), [
    ("_INBOX.reader.ann.x1", "reader", "ann", True),
    ("_INBOX.reader.bob.x1", "reader", "ann", False),  # another's inbox
    ("$JS.API.STREAM.PURGE.DTF_LOGS", "reader", "ann", False),
    ("dtf.evt.task.t1.started", "manager", "ann", False),
    ("_INBOX.reader.ann", "reader", "ann", False),  # the prefix itself
    ("_INBOX.reader.ann.*", "reader", "ann", False),
    ("_INBOX.worker.w1.abc", "worker", "w1", True),
    ("_INBOX.worker.w1.lease.s1", "worker", "w1", False),  # its own lease deliveries
    ("_INBOX.abc", "admin", "root", True),
    ("$SYS.REQ.SERVER.PING", "admin", "root", False),
    ("_INBOX.abc", None, None, True),  # no authentication (--insecure-dev): inboxes only
    ("dtf.evt.x", None, None, False),
    (None, "reader", "ann", False),
])
def test_answers_go_into_the_requesters_inbox_only(reply: str | None, role: str | None,
                                                   principal: str | None, ok: bool) -> None:
    assert reply_target(reply, role, principal) == (reply if ok else None)


def issued(jti: str, parent: str | None = None) -> TokenIssued:
    return TokenIssued(auth_id=jti, sub="ann", role="reader", exp=2e9, at=1.0, actor="x",
                       parent=parent)


def test_revoking_a_token_revokes_every_token_refreshed_from_it() -> None:
    auth = AuthState()
    for ev in (issued("a"), issued("b", "a"), issued("c", "b"), issued("d")):
        auth.apply(ev)
    auth.apply(TokenRevoked(auth_id="b", at=2.0, actor="x"))
    assert [auth.is_revoked(j) for j in "abcd"] == [False, True, True, False]


def test_revoking_a_worker_key_revokes_the_tokens_refreshed_from_it() -> None:
    auth = AuthState()
    auth.apply(issued("t1", "key1"))
    auth.apply(issued("t2", "t1"))
    auth.apply(ApiKeyRevoked(auth_id="key1", at=2.0, actor="x"))
    assert auth.is_revoked("t2") and auth.is_revoked("t1")


def test_a_stray_message_is_what_the_next_append_expects() -> None:
    board = Board()
    board.note_stray(7, "dtf.evt.task.t1.started")
    board.note_stray(9, "dtf.evt.lead.scheduler.claimed")
    board.note_stray(11, "dtf.junk")  # no aggregate: nothing to expect
    assert board.expect("task", "t1", 3) == 7 and board.expect("task", "t1", 8) == 8
    assert board.expect("lead", "scheduler", 0) == 9
    assert board.expect("task", "t2", 0) == 0 and board.last_seq == 11
