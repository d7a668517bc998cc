"""Leadership claims of singleton roles. Subjects: ``dtf.evt.lead.<role>.claimed``.

A claim carries a term (only ever growing), a holder and an expiry. It is appended with
optimistic concurrency on the role's subject, so of two standbys only one wins a term.
Safety never depends on it: leases are still checked per task.
"""

from __future__ import annotations

from msgspec import Struct


class LeadEventBase(Struct, frozen=True, kw_only=True, tag_field="type"):
    role: str
    at: float
    actor: str


class LeadershipClaimed(LeadEventBase, frozen=True, kw_only=True, tag="claimed"):
    holder: str
    term: int
    expires_at: float


LeadEvent = LeadershipClaimed
