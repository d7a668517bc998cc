"""Wiring the NATS auth callout into a stack: the server config, the persisted callout
keys, and the service that admits each connection with its role's permissions.

The callout runs in the control plane (it has the fold, so revocations in the log reach
it), on a system-account connection as ``dtf-auth``. A revoked token or API key is denied
on its next connect, and its live connections are kicked.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bcrypt
from nats.aio.client import Client

from agents.auth import apikeys
from agents.auth.errors import Unauthenticated
from agents.auth.gate import Gate
from agents.auth.keyfiles import create_secret_file, ensure_private_dir, read_secret_file
from agents.auth.natsauth import nkeys
from agents.auth.natsauth.callout import HOLD, AuthCallout, Session, Verdict
from agents.auth.natsauth.config import CalloutConfig, new_password
from agents.auth.natsauth.permissions import for_role, inbox_prefix

log = logging.getLogger(__name__)
AUTH_USER = "dtf-auth"


def issuer_file(keys: Path) -> Path:
    return keys / "callout-issuer.seed"


def password_file(keys: Path) -> Path:
    return keys / "callout-password"


def _load_or_create(path: Path, make: Any) -> str:
    if not path.exists():
        ensure_private_dir(path.parent)
        create_secret_file(path, make().encode())
    return read_secret_file(path).decode().strip()


def callout_secrets(keys: Path) -> tuple[nkeys.KeyPair, str]:
    """The callout's issuer key and the auth user's password: made once, kept 0600."""
    seed = _load_or_create(issuer_file(keys),
                           lambda: nkeys.KeyPair.create(nkeys.PREFIX_ACCOUNT).seed)
    password = _load_or_create(password_file(keys), new_password)
    return nkeys.KeyPair.from_seed(seed), password


def server_config(base: str, keys: Path, path: Path) -> Path:
    """Write the server config: the base (nats.conf) plus the auth callout block, 0600."""
    issuer, password = callout_secrets(keys)
    # The server keeps only a bcrypt hash of the auth user's password; the plaintext stays
    # in the 0600 key file the control plane reads.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=11, prefix=b"2a")).decode()
    text = base + "\n" + CalloutConfig(issuer_public_key=issuer.public_key,
                                       auth_password=hashed, auth_user=AUTH_USER).render()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    create_secret_file(path, text.encode())
    return path


FOLD_WAIT_S = 1.5  # under the server's 2 s authorization timeout


def make_callout(gate: Gate, issuer: nkeys.KeyPair,
                 folded: asyncio.Event | None = None) -> AuthCallout:
    """``folded``: set once the log is folded. Until then an API key (known only from the
    log) waits briefly; a token is checked by its signature at once, and any revoked
    token admitted meanwhile is kicked once the fold is done (``kick_revoked``)."""

    failures = FailedLogins()

    async def authorize(token: str, client_info: Mapping[str, Any]) -> Verdict:
        host = str(client_info.get("host") or "")
        blocked = failures.blocked(host) > 0
        api_key = token.startswith(apikeys.PREFIX)
        if api_key and blocked:
            # Too many failed logins from there: an API key (scrypt) is not even checked,
            # and not answered, so each try waits out the server's authorization timeout.
            return HOLD
        if api_key and folded is not None and not folded.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(folded.wait(), FOLD_WAIT_S)
        try:
            claims = await gate.principal_async({"Authorization": f"Bearer {token}"})
        except Unauthenticated as exc:
            failures.failed(host)
            # A token is cheap to check, so a valid one always passes; a bad one from a
            # source that keeps failing gets no answer either.
            return HOLD if blocked else str(exc)
        # a worker's principal is its worker id, an autoscaler's its group (both in wid)
        principal = claims.wid if claims.role in ("worker", "autoscaler") and claims.wid \
            else claims.sub
        return for_role(str(claims.role), principal).until(claims.exp)

    return AuthCallout(issuer, authorize)


class FailedLogins:
    """Per source address: ``limit`` failed logins within ``window`` seconds block it
    until the window has passed (see ``make_callout``: a blocked source's API keys are not
    checked and its failures not answered; valid tokens still pass)."""

    def __init__(self, limit: int = 10, window: float = 10.0,
                 clock: Any = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.recent: dict[str, collections.deque[float]] = {}

    def blocked(self, host: str) -> float:
        times = self.recent.get(host)
        now = self.clock()
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            self.recent.pop(host, None)
            return 0.0
        return self.window - (now - times[0]) if len(times) >= self.limit else 0.0

    def failed(self, host: str) -> None:
        self.recent.setdefault(host, collections.deque()).append(self.clock())
        if len(self.recent) > 10_000:  # bounded, whatever the addresses
            self.recent.pop(next(iter(self.recent)))


async def kick_revoked(callout: AuthCallout, gate: Gate, nc_sys: Client) -> int:
    """Disconnect every admitted connection whose credential no longer passes the gate."""

    def revoked(session: Session) -> bool:
        try:
            gate.principal({"Authorization": f"Bearer {session.token}"})
        except Unauthenticated:
            return True
        return False

    return await callout.kick_where(nc_sys, revoked)


def unverified_claims(credential: str) -> dict[str, Any] | None:
    """A token's claims, read without checking anything (the server and the api decide what
    it really grants); None for what is not a token."""
    try:
        payload = credential.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def client_inbox_prefix(credential: str | None, worker_id: str | None = None) -> str | None:
    """The inbox prefix the callout grants this credential (read from the token's claims,
    unverified: the server decides what it really grants)."""
    if not credential:
        return None
    if credential.startswith(apikeys.PREFIX + "_"):
        return inbox_prefix("worker", worker_id) if worker_id else None
    claims = unverified_claims(credential) or {}
    role, sub, wid = claims.get("role"), claims.get("sub"), claims.get("wid")
    if not isinstance(role, str) or not isinstance(sub, str):
        return None
    if role in ("admin", "agent"):
        return None
    return inbox_prefix(role, wid if role in ("worker", "autoscaler") and wid else sub)
