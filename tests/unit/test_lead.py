"""Given a claim, when an agent asks at some time, then terms grow and only one leads."""

from dtf_core.lead import decide_claim, leads


def test_first_claim_renewal_takeover_and_stepping_down() -> None:
    first = decide_claim(None, role="scheduler", holder="a", now=0, ttl=2)
    assert first is not None and (first.term, first.holder, first.expires_at) == (1, "a", 2)
    assert decide_claim(first, role="scheduler", holder="b", now=1, ttl=2) is None  # held
    renewal = decide_claim(first, role="scheduler", holder="a", now=1, ttl=2)
    assert renewal is not None and renewal.term == 1 and renewal.expires_at == 3
    takeover = decide_claim(renewal, role="scheduler", holder="b", now=3.5, ttl=2)
    assert takeover is not None and takeover.term == 2 and takeover.holder == "b"
    assert leads(takeover, "b", 4, margin=0.25) and not leads(takeover, "a", 4, margin=0.25)
    # the old leader, back after a pause, folds term 2 and stands down; its next claim
    # waits for the expiry and then takes a higher term: terms only grow
    assert decide_claim(takeover, role="scheduler", holder="a", now=4, ttl=2) is None
    later = decide_claim(takeover, role="scheduler", holder="a", now=6, ttl=2)
    assert later is not None and later.term == 3
    assert not leads(first, "a", 1.9, margin=0.25)  # the margin covers clock drift
