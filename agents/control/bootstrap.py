"""Credentials for a local stack: `dtf up` creates its signing key once, then at each start
issues fresh tokens for the local admin, its agents and its workers (revoking the ones it
issued before), and records all of it in the log with actor ``dtf-up``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.auth.keyfiles import (
    create_secret_file,
    ensure_private_dir,
    replace_secret_file,
)
from agents.auth.keyring import Keyring, public_raw
from agents.auth.secrets import Sealer
from agents.auth.tokens import issue, new_token_id
from agents.log.appender import append_groups
from agents.log.commit import Change
from agents.log.port import EventLog
from dtf_core import subjects
from dtf_core.events.auth import AuthEventBase, SigningKeyAdded, TokenIssued, TokenRevoked
from dtf_core.events.codec import Event, decode
from dtf_core.ids import validate_id
from projections.auth import AuthState

ACTOR = "dtf-up"
SERVICE_TTL_S = 365 * 24 * 3600.0
ADMIN_TTL_S = 30 * 24 * 3600.0


@dataclass
class Credentials:
    """Where each principal's credential file is; ``admin`` is the local user's."""

    admin: Path
    files: dict[str, Path] = field(default_factory=dict)


def keys_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


def admin_token_file(data_dir: Path) -> Path:
    return data_dir / "admin.jwt"


# The HTTP agent acts under each caller's own credential; its own needs only to read.
# `dtf init --enroll`'s credential only creates keys for new workers. The autoscaler's
# drains and keys the workers of its own group only (its token's wid names the group).
SERVICE_ROLES = {"http": "reader", "enroll": "enroller", "autoscaler": "autoscaler"}


def mint(data_dir: Path, *, services: list[str], workers: list[str],
         autoscale_group: str = "local") -> tuple[Credentials, list[TokenIssued]]:
    """Issue fresh credentials into 0600 files; the events that record them come back, to be
    appended (``record``) once the log can be written. ``autoscale_group``: the worker group
    of the ``autoscaler`` service, if it is one of ``services``."""
    keyring = Keyring.load_or_create(keys_dir(data_dir))
    # The secrets key goes with the signing key: every control plane given this keys/
    # opens the secrets any of them sealed (`dtf init` for several hosts; a read-only
    # keys/ mount could not have it made at the control plane's first start).
    Sealer.load_or_create(keys_dir(data_dir))
    now = time.time()
    creds = Credentials(admin=admin_token_file(data_dir))
    cred_dir = data_dir / "credentials"
    ensure_private_dir(cred_dir)
    wanted: list[tuple[str, str, str | None, float, Path]] = [
        ("local-admin", "admin", None, ADMIN_TTL_S, creds.admin)]
    wanted += [(f"agent-{s}", SERVICE_ROLES.get(s, "admin"),
                validate_id(autoscale_group, "worker group") if s == "autoscaler" else None,
                SERVICE_TTL_S, cred_dir / f"{s}.jwt") for s in services]
    wanted += [(w, "worker", w, SERVICE_TTL_S, cred_dir / f"{w}.jwt") for w in workers]
    events = []
    for sub, role, wid, ttl, path in wanted:
        jti = new_token_id()
        token = issue(keyring, sub=sub, role=role, ttl=ttl, now=now, jti=jti, wid=wid)
        if path.exists():
            replace_secret_file(path, token.encode())
        else:
            create_secret_file(path, token.encode())
        creds.files[sub] = path
        events.append(TokenIssued(auth_id=jti, sub=sub, role=role, exp=int(now + ttl), wid=wid,
                                  at=now, actor=ACTOR))
    return creds, events


async def record(eventlog: EventLog, data_dir: Path, issued: list[TokenIssued]) -> None:
    """Append the signing keys' public halves, the new tokens, and the revocation of every
    token an earlier `dtf up` issued."""
    keyring = Keyring.load(keys_dir(data_dir))
    state = AuthState()
    for rec in await eventlog.read([subjects.AUTH_EVENTS]):
        ev = decode(rec.subject, rec.data)
        if isinstance(ev, AuthEventBase):
            state.apply(ev)
    now = time.time()
    events: list[Event] = []
    for kid in keyring.kids:
        if kid not in state.public_keys:
            pub = public_raw(keyring.verification_key(kid))
            events.append(SigningKeyAdded(auth_id=kid, public_key=pub, at=now, actor=ACTOR))
    fresh = {e.auth_id for e in issued}
    for jti, old in state.issued.items():
        if old.actor == ACTOR and jti not in state.revoked and jti not in fresh:
            events.append(TokenRevoked(auth_id=jti, reason="replaced at dtf up start", at=now,
                                       actor=ACTOR))
    events.extend(e for e in issued if e.auth_id not in state.issued)
    await append_groups(eventlog, [Change([e], None, None).appends() for e in events])
