"""JetStream's refusals of an append, as DTF's errors: which the sender may retry."""

from __future__ import annotations

import pytest

from agents.log.jetstream import _raise_for
from agents.log.port import AppendConflict
from dtf_core.errors import DTFError, InvalidInput, Unavailable


def refusal(code: int, description: str = "") -> dict[str, object]:
    return {"error": {"code": 400, "err_code": code, "description": description}}


def test_a_resend_while_the_first_copy_is_being_stored_is_retried_not_refused() -> None:
    # a node died under a submission; its client resent while the new stream leader still
    # held the first copy (the chaos test of a killed nats node met this)
    with pytest.raises(Unavailable) as caught:
        _raise_for(refusal(10158, "duplicate message id is in process"))
    assert caught.value.retryable


@pytest.mark.parametrize(("code", "error"), [
    (10071, AppendConflict), (10054, InvalidInput), (10999, DTFError)])
def test_other_refusals_keep_their_meaning(code: int, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        _raise_for(refusal(code))
    assert not isinstance(caught.value, Unavailable)


def test_an_acknowledgement_raises_nothing() -> None:
    _raise_for({"stream": "DTF_EVENTS", "seq": 7})
