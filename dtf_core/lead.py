"""Deciding leadership claims: take an expired claim with a higher term, renew one's own
with the same term. Pure: the claim seen, who asks, and the time."""

from __future__ import annotations

from dtf_core.events.lead import LeadershipClaimed


def decide_claim(current: LeadershipClaimed | None, *, role: str, holder: str, now: float,
                 ttl: float) -> LeadershipClaimed | None:
    """The claim ``holder`` should append now, or None while another holds a live claim."""
    if current is not None and current.holder != holder and now < current.expires_at:
        return None
    if current is not None and current.holder == holder and now < current.expires_at:
        term = current.term  # a renewal
    else:
        term = (current.term if current is not None else 0) + 1  # a takeover
    return LeadershipClaimed(role=role, holder=holder, term=term, expires_at=now + ttl,
                             at=now, actor=holder)


def leads(current: LeadershipClaimed | None, holder: str, now: float, margin: float) -> bool:
    """Whether ``holder`` may act as leader now: its claim is the newest and has not expired
    (less a margin for clock drift between hosts)."""
    return current is not None and current.holder == holder and now < current.expires_at - margin
