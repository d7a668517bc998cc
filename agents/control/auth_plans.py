"""Plans for the auth commands: issue, refresh and revoke tokens; create and revoke worker
API keys. Issuing and revoking are events in the log, with the actor; secrets never are."""

from __future__ import annotations

from agents.auth import apikeys
from agents.auth.errors import Forbidden
from agents.auth.keyring import Keyring, public_raw
from agents.auth.roles import Role, is_autoscaled_worker_id
from agents.auth.tokens import Claims, issue, new_token_id
from agents.control.plans import Plan
from agents.log.commit import Change
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import InvalidInput, NotFound, Refused
from dtf_core.events.auth import (
    ApiKeyCreated,
    ApiKeyRevoked,
    SigningKeyAdded,
    SigningKeyRetired,
    TokenIssued,
    TokenRevoked,
)
from dtf_core.ids import validate_id
from dtf_core.replies import (
    CreatedApiKey,
    KeyRetired,
    KeyRotated,
    RevokedApiKey,
    RevokedToken,
    TokenGranted,
)
from projections.board import Board

MAX_TTL_S = 366 * 24 * 3600.0
# A refresh renews a session; it never makes a longer-lived credential than this, and a
# token (or key) may be refreshed once a minute at most.
MAX_REFRESH_TTL_S = 30 * 24 * 3600.0
REFRESH_INTERVAL_S = 60.0


def _auth_filter(auth_id: str) -> str:
    return f"dtf.evt.auth.{validate_id(auth_id, 'auth id')}.>"


def _signer(keyring: Keyring | None) -> Keyring:
    if keyring is None:
        raise Refused("this api agent holds no signing key, so it cannot issue tokens")
    return keyring


def _issued(token: str, event: TokenIssued) -> Plan:
    change = Change([event], 0, _auth_filter(event.auth_id))
    return Plan([change], lambda: TokenGranted(token=token, jti=event.auth_id, exp=int(event.exp)),
                keys={event.auth_id})


def _issue_token(keyring: Keyring | None, *, sub: str, role: str, wid: str | None,
                 ttl_s: float, now: float, actor: str, parent: str | None = None,
                 max_ttl_s: float = MAX_TTL_S) -> Plan:
    """Sign a token and record its claims (never the token) as ``token_issued``."""
    if not 0 < ttl_s <= max_ttl_s:
        raise InvalidInput(f"ttl must be between 0 and {max_ttl_s:.0f} seconds")
    jti = new_token_id()
    token = issue(_signer(keyring), sub=sub, role=role, ttl=ttl_s, now=now, jti=jti, wid=wid)
    # exp as the float the log decodes it to: the api folds this very event, and its state
    # hash must equal a replay's (an int encodes to other bytes)
    event = TokenIssued(auth_id=jti, sub=sub, role=str(Role(role)),
                        exp=float(int(now + ttl_s)), wid=wid, at=now, actor=actor,
                        parent=parent)
    return _issued(token, event)


def plan_issue(board: Board, cmd: cmds.IssueToken, *, keyring: Keyring | None,
               now: float) -> Plan:
    if cmd.role == Role.AUTOSCALER:
        if not cmd.worker_id:
            raise InvalidInput("an autoscaler's token names the worker group it scales "
                               "(`dtf token issue --role autoscaler --worker-id GROUP`)")
        validate_id(cmd.worker_id, "worker group")
    return _issue_token(keyring, sub=cmd.sub, role=cmd.role, wid=cmd.worker_id,
                        ttl_s=cmd.ttl_s, now=now, actor=cmd.actor)


def plan_refresh(board: Board, cmd: cmds.RefreshToken, claims: Claims, *,
                 keyring: Keyring | None, now: float) -> Plan:
    """A new token for the same principal, of at most 30 days, once a minute at most. The
    presented token stays valid until it expires, and the new one records it as its parent:
    revoking the presented token (or the worker API key it came from, or any token before
    it) revokes the new one too."""
    last = board.auth.last_refresh.get(claims.jti)
    if last is not None and now - last < REFRESH_INTERVAL_S:
        raise Refused(f"this credential was refreshed {now - last:.0f}s ago; refresh at most "
                      f"once every {REFRESH_INTERVAL_S:.0f}s")
    return _issue_token(keyring, sub=claims.sub, role=str(claims.role), wid=claims.wid,
                        ttl_s=cmd.ttl_s, now=now, actor=cmd.actor, parent=claims.jti,
                        max_ttl_s=MAX_REFRESH_TTL_S)


def plan_revoke(board: Board, cmd: cmds.RevokeToken, *, now: float) -> Plan:
    jti = validate_id(cmd.jti, "token id")
    if jti not in board.auth.issued:
        raise NotFound(f"unknown token {jti}")
    changes = []
    if jti not in board.auth.revoked:
        event = TokenRevoked(auth_id=jti, reason=cmd.reason, at=now, actor=cmd.actor)
        changes.append(Change([event], None, None))
    return Plan(changes, lambda: RevokedToken(jti=jti, revoked=True), keys={jti})


def plan_create_key(board: Board, cmd: cmds.CreateApiKey, *, now: float,
                    new_worker_only: bool = False, group: str | None = None) -> Plan:
    """``new_worker_only`` (an enroller asks): not for a worker id that has registered or
    has a key already, so an enroller cannot take over a worker that exists.

    ``group`` (an autoscaler of that group asks): only for ``<group>-auto-<n>``, a worker it
    starts itself, and not while a worker of that id is alive or lost (it may still run):
    the new key replaces that worker's earlier keys, which are revoked with it."""
    wid = validate_id(cmd.worker_id, "worker id")
    if new_worker_only:
        if wid in board.workers or any(k.worker_id == wid for k in board.auth.api_keys.values()):
            raise Forbidden(f"forbidden: worker {wid!r} exists; an enroller creates keys "
                            "for new worker ids only")
    replaced: list[str] = []  # the worker's earlier keys, revoked with the new one
    if group is not None:
        if not is_autoscaled_worker_id(group, wid):
            raise Forbidden(f"forbidden: the autoscaler of group {group!r} creates keys only "
                            f"for its own workers, not {wid!r}")
        current = board.workers.get(wid)
        if current is not None and current.status != "stopped":
            raise Forbidden(f"forbidden: worker {wid!r} is {current.status}; an autoscaler "
                            "creates keys only for workers that are not running")
        replaced = [key_id for key_id, k in sorted(board.auth.api_keys.items())
                    if k.worker_id == wid and key_id not in board.auth.revoked_keys]
    new = apikeys.create_api_key(cmd.worker_id)
    rec = new.record
    event = ApiKeyCreated(auth_id=rec.key_id, worker_id=rec.worker_id, scheme=rec.scheme,
                          n=rec.n, r=rec.r, p=rec.p, salt=rec.salt, hash=rec.hash, at=now,
                          actor=cmd.actor)
    change = Change([event], 0, _auth_filter(rec.key_id))
    revokes = [Change([ApiKeyRevoked(auth_id=key_id, at=now, actor=cmd.actor,
                                     reason="replaced by the autoscaler's new key")], None, None)
               for key_id in replaced]
    return Plan([*revokes, change],
                lambda: CreatedApiKey(key=new.plaintext, key_id=rec.key_id,
                                      worker_id=rec.worker_id),
                keys={rec.key_id, *replaced})


def plan_revoke_key(board: Board, cmd: cmds.RevokeApiKey, *, now: float) -> Plan:
    key_id = validate_id(cmd.key_id, "key id")
    if key_id not in board.auth.api_keys:
        raise NotFound(f"unknown api key {key_id}")
    changes = []
    if key_id not in board.auth.revoked_keys:
        event = ApiKeyRevoked(auth_id=key_id, reason=cmd.reason, at=now, actor=cmd.actor)
        changes.append(Change([event], None, None))
    return Plan(changes, lambda: RevokedApiKey(key_id=key_id, revoked=True), keys={key_id})


def plan_rotate(board: Board, cmd: cmds.RotateKey, *, keyring: Keyring | None,
                now: float) -> Plan:
    """A new current signing key; tokens signed by the old ones stay valid until retired."""
    signer = _signer(keyring)
    kid = signer.rotate()
    event = SigningKeyAdded(auth_id=kid, public_key=public_raw(signer.verification_key(kid)),
                            at=now, actor=cmd.actor)
    return Plan([Change([event], None, None)], lambda: KeyRotated(kid=kid), keys={kid})


def plan_retire(board: Board, cmd: cmds.RetireKey, *, keyring: Keyring | None,
                now: float) -> Plan:
    kid = validate_id(cmd.kid, "key id")
    signer = _signer(keyring)
    if kid == signer.current_kid:
        raise Refused("rotate first: the current signing key cannot be retired")
    signer.retire(kid)
    event = SigningKeyRetired(auth_id=kid, at=now, actor=cmd.actor)
    return Plan([Change([event], None, None)], lambda: KeyRetired(kid=kid, retired=True),
                keys={kid})


__all__ = ["plan_create_key", "plan_issue", "plan_refresh", "plan_revoke", "plan_revoke_key",
           "subjects"]
